"""`calibration import-public`: aiconfigurator's tables mapped to profile points, and the shipped imported profiles."""

import json
from pathlib import Path

import pytest

from calibration.public_import import SYSTEMS, import_public
from emulator.cost import Profile, load_profile
from emulator.cost.profile import shape_from_json
from emulator.devices import catalog
from emulator.shapes import Attention, Linear

PROFILES = Path(__file__).parents[1] / "calibration" / "profiles"
META = {"framework": "VLLM", "version": "0.24.0", "device": "NVIDIA H100 80GB HBM3"}


def write_table(path: Path, rows: list[dict]) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist([{**META, **r} for r in rows]), path)


def attention_row(op, b, s, h, kv, latency, step=0, **extra):
    return {"op_name": op, "kernel_source": "fa3", "batch_size": b, "isl": s, "num_heads": h,
            "num_key_value_heads": kv, "head_dim": 128, "beam_width": 1, "attn_dtype": "bfloat16",
            "kv_cache_dtype": "bfloat16", "step": step, "window_size": 0, "latency": latency, **extra}


def tiny_tables(root: Path) -> Path:
    system = root / "h100_sxm"
    gemm = [{"op_name": "gemm", "kernel_source": "torch.nn.functional.linear", "gemm_dtype": "bfloat16",
             "m": m, "n": n, "k": k, "latency": 0.01 * m * n * k / 64**3} for m in (1, 16, 256)
            for n in (64, 1024) for k in (64, 2048)]
    gemm[0]["latency"] = 0.01  # m, n, k = 1, 64, 64 at 0.01 ms
    gemm += [{**gemm[0], "latency": 0.03},  # a repeat of the first shape: the median of 0.01 and 0.03
             {**gemm[0], "gemm_dtype": "fp8", "kernel_source": "Cutlass", "latency": 9.0},  # not bf16
             {**gemm[0], "m": 3, "latency": 9.0}]  # off the lattice
    write_table(system / "gemm/vllm/0.24.0/gemm_perf.parquet", gemm)
    context = [attention_row("context_attention", b, s, 8, 8, 0.02 * b * s / 16) for b in (1, 4) for s in (16, 256, 1024)]
    context += [attention_row("context_attention", 1, 16, 8, 2, 9.0),  # grouped-query: kept, with its 2 KV heads
                attention_row("context_attention", 1, 16, 8, 8, 9.0, kv_cache_dtype="fp8")]
    write_table(system / "attention/vllm/0.24.0/context_attention_perf.parquet", context)
    generation = [attention_row("generation_attention", b, 1, 8, 8, 0.005 * b, step=st) for b in (1, 8)
                  for st in (1, 63, 1023)]
    write_table(system / "attention/vllm/0.24.0/generation_attention_perf.parquet", generation)
    encoder = [{"op_name": "encoder_attention", "kernel_source": "fa3", "batch_size": b, "isl": s, "num_heads": 4,
                "head_dim": 64, "attn_dtype": "bfloat16", "latency": 0.01 * b * s / 64} for b in (1, 2)
               for s in (64, 256, 4096)]
    write_table(system / "encoder_attention/vllm/0.24.0/encoder_attention_perf.parquet", encoder)
    return root


def points(profile, kind):
    return {shape_from_json(kind, p["shape"]): p["seconds"] for p in profile["kinds"][kind]["points"]}


def test_tables_become_profile_points_with_known_answers(tmp_path):
    profile = import_public("h100_sxm", data_dir=tiny_tables(tmp_path))
    linear = points(profile, "linear")
    assert len(linear) == 12  # fp8, off-lattice rows dropped; the repeat merged
    assert linear[Linear(1, 64, 64, bias=False)] == pytest.approx(2e-5)  # median(0.01, 0.03) ms
    assert linear[Linear(16, 2048, 1024, bias=False)] == pytest.approx(0.01 * 16 * 1024 * 2048 / 64**3 * 1e-3)
    attention = points(profile, "attention_fa3")  # kernel source "fa3": FlashAttention-3
    assert attention[Attention(4, 8, 256, 256, 128, "causal", causal=True)] == pytest.approx(0.02 * 4 * 256 / 16e3)
    decode = Attention(8, 8, 1, 64, 128, "causal", causal=True, kv_cache=True)  # kv length isl + step
    assert attention[decode] == pytest.approx(0.04e-3)
    assert attention[Attention(2, 4, 4096, 4096, 64, "self")] == pytest.approx(0.01 * 2 * 64e-3)
    assert attention[Attention(1, 8, 16, 16, 128, "causal", causal=True, kv_heads=2)] == pytest.approx(9.0e-3)
    assert len(attention) == 6 + 1 + 6 + 6  # the fp8-cache row dropped
    prov = profile["provenance"]
    assert prov["source"] == "measured" and prov["framework"] == "vllm" and prov["timing"] == "CUDA-graph replay"
    assert profile["dtype"] == "bf16" and profile["host"]["included_in_kernel_times"] is False
    assert profile["attention_default"] == {"bidirectional": "fa3", "causal": "fa3", "decode": "fa3"}
    Profile(profile)


def test_each_attention_library_becomes_its_own_implementation(tmp_path):
    root = tiny_tables(tmp_path)
    table = root / "h100_sxm/attention/vllm/0.24.0/generation_attention_perf.parquet"
    rows = [attention_row("generation_attention", b, 1, 8, 8, 0.005 * b, step=7, kernel_source=source)
            for b in (1, 8) for source in ("vllm_flashinfer_fidecode", "vllm_flashinfer_fidecode", "torch_flow")]
    write_table(table, rows)
    profile = import_public("h100_sxm", data_dir=root)
    assert set(points(profile, "attention_flashinfer")) == {
        Attention(b, 8, 1, 8, 128, "causal", causal=True, kv_cache=True) for b in (1, 8)}
    assert profile["attention_default"]["decode"] == "flashinfer"  # the only library of the decode table
    assert profile["attention_default"]["causal"] == "fa3"
    assert "torch_flow" not in json.dumps(profile["kinds"])  # a source no rule names is skipped
    decode = Attention(1, 8, 1, 8, 128, "causal", causal=True, kv_cache=True)
    assert Profile(profile).implementation(decode) == "flashinfer"
    assert Profile(profile, "fa3").implementation(decode) == "fa3"
    with pytest.raises(ValueError, match="choose from: default, baseline, flash, fa3, flashinfer"):
        Profile(profile, "fa4")


def test_every_shipped_imported_profile_loads_and_cites_aiconfigurator():
    for system, (name, filename) in SYSTEMS.items():
        path = PROFILES / filename
        profile = load_profile(path)
        Profile(profile)
        prov = profile["provenance"]
        assert profile["device"] == name and name in catalog(), system
        assert prov["source"] == "measured" and system in prov["method"]
        assert any("aiconfigurator-core==0.12.0" in c and system in c for c in prov["citations"]), system
        measured = {k for k, e in profile["kinds"].items() if "source" not in e}
        assert "linear" in measured and "attention_flash" not in measured, system  # flash is PyTorch's: scaled
        assert all(k == "linear" or k.startswith("attention_") for k in measured), system
        assert set(profile["attention_default"].values()) <= {k.removeprefix("attention_") for k in measured}
        assert all(e["source"].startswith("transferred: measured h100-sxm") for k, e in profile["kinds"].items()
                   if k not in measured), system
        entry = json.loads(json.dumps(catalog()[name].profile))
        assert entry == filename or filename.endswith("-public.json")
