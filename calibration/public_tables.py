"""Reading aiconfigurator's kernel tables: parquet rows -> {shape: [seconds, ...]} per emulator kernel kind.

NVIDIA's aiconfigurator-core wheel (Apache-2.0) ships kernel latencies
measured on real GPUs, in milliseconds, timed as CUDA-graph replays (so no
host launch cost), under systems/data/<system>/<family>/<framework>/<version>/.
This module maps the rows the emulator can use onto its shapes:

- gemm_perf (m, n, k: an [m, k] x [k, n] product, `gemm_dtype` bfloat16 only)
  -> linear Linear(m, k, n, bias=False);
- context_attention_perf (causal prefill of `isl` tokens, batch_size
  sequences, num_heads query heads, num_key_value_heads KV heads)
  -> attention_flash Attention(b, heads, isl, isl, d, "causal", causal=True, kv_heads=kv);
- generation_attention_perf (one decode step per sequence against a cache of
  isl + step positions) -> Attention(b, heads, 1, isl + step, d, "causal",
  causal=True, kv_cache=True, kv_heads=kv), as workloads/llama3.py writes a
  decode step;
- encoder_attention_perf (bidirectional) -> Attention(b, heads, isl, isl, d, "self", kv_heads=kv).

Kept: bf16/fp16 compute with a bf16/fp16 KV cache, no sliding window, one beam.
Grouped-query rows (num_key_value_heads < num_heads) keep their KV-head count
(Attention.kv_heads: the K/V bytes of that many heads, the FLOPs of all query
heads); a row whose heads do not split into its KV heads is skipped. A GEMM
table keeps only its kernel source with the most rows. An attention table's
rows go to the attention implementation their kernel source names
(IMPLEMENTATION_OF_SOURCE: vLLM's FlashAttention builds fa2/fa3/fa4,
FlashInfer), so that one kind is one library's kernel; sources no
rule names (TensorRT-LLM's torch_flow, Triton) are skipped. Needs pyarrow (the
`public` extra); the emulator never reads these tables, only the profiles made
from them.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from emulator.shapes import Attention, Linear

HALF = ("bfloat16", "float16")
# Attention kernel source -> emulator implementation, first matching substring wins. vLLM's
# `vllm_flash_attn` without a suffix is its FlashAttention-2 build (the A100 tables).
IMPLEMENTATION_OF_SOURCE = (("flashinfer", "flashinfer"), ("fa4", "fa4"), ("fa3", "fa3"), ("v3", "fa3"),
                            ("fa2", "fa2"), ("vllm_flash_attn", "fa2"), ("vllm_vit_flash_attn", "fa2"))
# The attention shape class each attention table measures.
SHAPE_CLASS_OF_TABLE = {"encoder": "bidirectional", "context": "causal", "generation": "decode"}
TABLES = {"gemm": "gemm_perf.parquet", "context": "context_attention_perf.parquet",
          "generation": "generation_attention_perf.parquet", "encoder": "encoder_attention_perf.parquet"}
FAMILY = {"gemm": "gemm", "context": "attention", "generation": "attention", "encoder": "encoder_attention"}


def read_rows(path: Path) -> list[dict]:
    """A parquet table's rows as dicts."""
    import pyarrow.parquet as pq  # the `public` extra: only importing needs it

    return pq.read_table(path).to_pylist()


def dominant_source(rows: list[dict]) -> tuple[list[dict], str]:
    """The rows of the kernel source with the most rows, and its name ('' for none)."""
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.get("kernel_source") or ""] += 1
    if not counts:
        return [], ""
    source = max(sorted(counts), key=counts.get)
    return [r for r in rows if (r.get("kernel_source") or "") == source], source


def kv_heads_of(r: dict) -> int:
    """A row's KV heads (its query heads where the table has no such column)."""
    return int(r.get("num_key_value_heads") or r["num_heads"])


def usable_attention(r: dict) -> bool:
    """Half-precision compute and cache, full window, one beam, query heads in whole groups per KV head."""
    return (r["attn_dtype"] in HALF and r.get("kv_cache_dtype", r["attn_dtype"]) in HALF
            and not r.get("window_size", 0) and r.get("beam_width", 1) == 1
            and kv_heads_of(r) <= int(r["num_heads"]) and int(r["num_heads"]) % kv_heads_of(r) == 0)


def gemm_shapes(rows: list[dict]) -> dict:
    """{Linear: [seconds]} of the bf16 rows."""
    out = defaultdict(list)
    for r in rows:
        if r["gemm_dtype"] in HALF:
            out[Linear(int(r["m"]), int(r["k"]), int(r["n"]), bias=False)].append(r["latency"] * 1e-3)
    return out


def attention_shape(table: str, r: dict) -> Attention:
    b, h, s, d = int(r["batch_size"]), int(r["num_heads"]), int(r["isl"]), int(r["head_dim"])
    kv = kv_heads_of(r)
    if table == "context":
        return Attention(b, h, s, s, d, "causal", causal=True, kv_heads=kv)
    if table == "generation":
        return Attention(b, h, 1, s + int(r["step"]), d, "causal", causal=True, kv_cache=True, kv_heads=kv)
    return Attention(b, h, s, s, d, "self", kv_heads=kv)


def implementation_of(source: str) -> str | None:
    """The attention implementation a kernel source is, or None for one no rule names."""
    return next((impl for key, impl in IMPLEMENTATION_OF_SOURCE if key in source.lower()), None)


def attention_shapes(table: str, rows: list[dict]) -> dict[str, dict]:
    """{implementation: {Attention: [seconds]}} of one attention table's usable rows."""
    out: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        impl = implementation_of(r.get("kernel_source") or "")
        if impl and usable_attention(r):
            out[impl][attention_shape(table, r)].append(r["latency"] * 1e-3)
    return out


def table_shapes(table: str, path: Path) -> tuple[dict[str, dict], dict]:
    """({kind: {shape: [seconds]}}, {kernel sources kept, rows read, device named}) of one table file:
    kind `linear` for a GEMM table, `attention_<implementation>` for an attention table."""
    rows = read_rows(path)
    device = rows[0].get("device", "") if rows else ""
    if table == "gemm":
        kept, source = dominant_source([r for r in rows if r["gemm_dtype"] in HALF])
        return {"linear": gemm_shapes(kept)}, {"kernel_sources": {source: "linear"}, "rows": len(rows), "device": device}
    usable = [r for r in rows if usable_attention(r)]
    sources = sorted({r.get("kernel_source") or "" for r in usable})
    kinds = {f"attention_{impl}": shapes for impl, shapes in attention_shapes(table, usable).items()}
    named = {s: f"attention_{implementation_of(s)}" if implementation_of(s) else "skipped" for s in sources}
    return kinds, {"kernel_sources": named, "rows": len(rows), "device": device}


def version_key(version: str) -> tuple:
    """Sort key of a version string: numeric parts as numbers ('0.5.14' after '0.5.6.post2')."""
    parts = version.replace("rc", ".").replace("post", ".").replace("dev", ".").split(".")
    return tuple(int(p) if p.isdigit() else -1 for p in parts)


def table_files(system_dir: Path, framework: str) -> dict[str, tuple[str, Path]]:
    """{table: (version, file)} of a framework's newest version holding each table."""
    out = {}
    for table, filename in TABLES.items():
        root = system_dir / FAMILY[table] / framework
        found = sorted(root.glob(f"*/{filename}"), key=lambda p: version_key(p.parent.name)) if root.is_dir() else []
        if found:
            out[table] = (found[-1].parent.name, found[-1])
    return out


def frameworks(system_dir: Path) -> list[str]:
    """The frameworks with both a GEMM table and an attention table for this system."""
    names = {p.name for p in (system_dir / "gemm").glob("*") if p.is_dir()} if (system_dir / "gemm").is_dir() else set()
    return sorted(f for f in names if {"gemm", "context"} <= set(table_files(system_dir, f)))
