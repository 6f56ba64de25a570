"""`python -m calibration import-public`: a GPU's profile from aiconfigurator's measured kernel tables.

NVIDIA's aiconfigurator-core (Apache-2.0, PyPI `aiconfigurator-core==0.12.0`)
ships bf16 GEMM and attention latencies measured on the GPUs themselves,
timed as CUDA-graph replays. They are that device's own kernel measurements,
so the profile is `measured` (provenance names the package, version, files,
framework and timing method); the host's per-op and per-kernel times, which a
graph replay leaves out, come from the device catalog. Kinds: `linear`
(the bf16 GEMM table) and one `attention_<implementation>` per attention
library the tables time (prefill, decode and encoder attention; e.g. fa3 on
Hopper, FlashInfer and fa4 on Blackwell); the profile's `attention_default`
names, per shape class, the library with the most rows in that class's table.
The kinds the tables lack (PyTorch's own flash attention among them) are the measured H100 profile's, scaled
to the device by a stated rule (calibration/scaled_kinds.py). Tables are read
by calibration/public_tables.py.

One framework per system: vLLM where it has the tables (its bf16 GEMM is
torch.nn.functional.linear, the cuBLAS call eager PyTorch makes, and its
attention is FlashAttention, as PyTorch's fused attention), else the one with
the most usable rows. Shapes measured more than once, or equal in the kind's
shape features (attention: batch x heads together), keep their median. GEMMs
and encoder attention are kept on a lattice of round sizes (GEMM_M, GEMM_NK,
ENCODER_SEQ): the tables' tens of thousands of rows would make a profile of
many megabytes, and their m = 2^j + 1 rows, a tile-quantization probe a step
apart from their neighbours, are what a smooth interpolation cannot follow. Needs pyarrow (the `public` extra) and the unpacked wheel.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from functools import cache
from pathlib import Path

from calibration.public_tables import SHAPE_CLASS_OF_TABLE, TABLES, frameworks, table_files, table_shapes
from calibration.write import profile_document, write
from calibration.public_merge import add_public_attention, declare_launch_excess
from calibration.scaled_kinds import scaled_kinds
from emulator.cost.kernels import attention_of_kind
from emulator.cost.predictor import DEFAULT_FEATURES, FEATURE_SETS, Curve, fit_predictor
from emulator.cost.profile import load_profile, shape_to_json
from emulator.devices import catalog
from emulator.devices import device as catalog_device
from emulator.errors import UserError

PACKAGE = "aiconfigurator-core"
PACKAGE_VERSION = "0.12.0"
DTYPE = "bf16"
PROFILES = Path(__file__).with_name("profiles")
MEASURED_H100 = PROFILES / "h100-sxm.json"
# aiconfigurator system -> (catalog device, profile file). Devices with their own shipped profile get `-public`.
SYSTEMS = {
    "a100_sxm": ("a100-sxm4-80gb", "a100-sxm4-80gb-public.json"),
    "h100_sxm": ("h100-sxm", "h100-sxm-public.json"),
    "h200_sxm": ("h200", "h200.json"),
    "b200_sxm": ("b200", "b200.json"),
    "b300_sxm": ("b300", "b300.json"),
    "gb200": ("gb200", "gb200.json"),
    "gb300": ("gb300", "gb300.json"),
    "l40s": ("l40s", "l40s.json"),
    "rtx_pro_6000_server": ("rtx-pro-6000-server", "rtx-pro-6000-server.json"),
}
PREFERRED = "vllm"
# The lattice kept (a profile of about a thousand points per kind, not tens of thousands): GEMM m at powers
# of two, n and k at powers of two and the 1.5x sizes common in models; encoder attention at power-of-two lengths.
GEMM_M = tuple(2**i for i in range(16))
GEMM_NK = (64, 128, 256, 512, 1024, 2048, 4096, 6144, 8192, 12288, 16384)
ENCODER_SEQ = tuple(2**i for i in range(17))
# Grouped-query rows (about 12k per Hopper/Blackwell table, 39 head/KV-head pairs) are kept at the groups of
# 4 and 8 query heads per KV head (LLaMA-3 8B and 70B, Mistral) and per-GPU head counts 8-64: a third of the
# rows, so that a profile loads in a fraction of a second.
GQA_GROUPS = (4, 8)
GQA_HEADS = (8, 16, 32, 64)
# With --system all, a device whose default profile is not the imported one (the H100's own calibration, the
# A100's derived profile) gains the tables' attention libraries as kinds of their own (calibration/public_merge.py).


def default_data_dir() -> Path:
    """systems/data of an installed aiconfigurator-core, else a UserError saying what to pass."""
    import importlib.util

    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{PACKAGE} is not installed: `pip install -e '.[public]'`, or give --data-dir "
                        "(the wheel's aiconfigurator_core/systems/data)")
    return Path(list(spec.submodule_search_locations)[0]) / "systems" / "data"


def choose_framework(system_dir: Path, framework: str | None) -> tuple[str, str]:
    """(framework, why) for a system: the one asked for, vLLM, or the one with the most table files."""
    usable = frameworks(system_dir)
    if framework is not None:
        if framework not in usable:
            raise UserError(f"{system_dir.name}: no GEMM and attention tables for framework {framework!r}; "
                            f"it has: {', '.join(usable) or 'none'}")
        return framework, "chosen with --framework"
    if not usable:
        raise UserError(f"{system_dir}: no framework with both a GEMM and an attention table")
    if PREFERRED in usable:
        return PREFERRED, ("vLLM: its bf16 GEMM is torch.nn.functional.linear (the cuBLAS call eager PyTorch "
                           "makes) and its attention FlashAttention-family kernels, as PyTorch's fused attention")
    best = max(usable, key=lambda f: len(table_files(system_dir, f)))
    return best, "no vLLM tables: the framework with the most tables"


def on_lattice(table: str, shape) -> bool:
    """Whether a table's shape is kept: GEMMs, encoder attention and grouped-query attention on their
    lattices, all other (multi-head) attention."""
    if table == "gemm":
        return shape.m in GEMM_M and shape.k in GEMM_NK and shape.n in GEMM_NK
    if shape.kv_heads is not None:  # grouped-query: the group sizes and head counts models use
        return shape.heads // shape.kv_heads in GQA_GROUPS and shape.heads in GQA_HEADS
    return table != "encoder" or shape.q_len in ENCODER_SEQ


def merged(kind: str, shapes: dict) -> tuple[list, list[float]]:
    """Shapes and median seconds, shapes with equal features (and repeated shapes) merged into one point."""
    groups: dict[tuple, list] = defaultdict(list)
    for shape, seconds in shapes.items():
        groups[tuple(FEATURE_SETS[DEFAULT_FEATURES[kind]](shape))].append((shape, seconds))
    out_shapes, out_seconds = [], []
    for key in sorted(groups):
        members = sorted(groups[key], key=lambda ms: repr(ms[0]))
        out_shapes.append(members[0][0])
        out_seconds.append(statistics.median(t for _, ts in members for t in ts))
    return out_shapes, out_seconds


def read_system(system_dir: Path, framework: str) -> tuple[dict, list[dict]]:
    """({kind: {shape: [seconds]}}, what was read per table) for one system and framework."""
    kinds: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    read = []
    for table, (version, path) in sorted(table_files(system_dir, framework).items()):
        table_kinds, info = table_shapes(table, path)
        for kind, shapes in table_kinds.items():
            for shape, seconds in shapes.items():
                if on_lattice(table, shape):
                    kinds[kind][shape] += seconds
        read.append({"table": table, "version": version, **info,
                     "shapes": sum(len(shapes) for shapes in table_kinds.values()),
                     "rows_by_kind": {k: sum(len(t) for t in shapes.values()) for k, shapes in table_kinds.items()},
                     "file": path.relative_to(system_dir.parent).as_posix()})
    return kinds, read


def attention_default(read: list[dict]) -> dict[str, str]:
    """{shape class: implementation}: per attention table, the implementation with the most rows in it
    (what the framework runs for that class on this device)."""
    out = {}
    for r in read:
        counts = {k: n for k, n in r["rows_by_kind"].items() if k.startswith("attention_") and n}
        if r["table"] in SHAPE_CLASS_OF_TABLE and counts:
            out[SHAPE_CLASS_OF_TABLE[r["table"]]] = attention_of_kind(max(sorted(counts), key=counts.get))
    return out


def kind_entry(kind: str, shapes: dict, dev, backend: str) -> dict:
    points, seconds = merged(kind, shapes)
    predictor = fit_predictor(kind, DTYPE, points, seconds, dev)
    return {"features": DEFAULT_FEATURES[kind], "backend": backend, "curve": predictor.curve.asdict(),
            "points": [{"shape": shape_to_json(s), "seconds": t} for s, t in zip(points, seconds)]}


def backend_of(kind: str, framework: str, read: list[dict]) -> str:
    """The framework and, per table feeding the kind, the kernel sources it took."""
    parts = [f"{r['table']}: " + ", ".join(s for s, k in r["kernel_sources"].items() if k == kind)
             for r in read if kind in r["kernel_sources"].values()]
    return f"{framework} " + "; ".join(parts)


def provenance(system: str, framework: str, why: str, read: list[dict], gpu: str) -> dict:
    versions = sorted({r["version"] for r in read})
    return {
        "source": "measured",
        "method": f"python -m calibration import-public --system {system} --framework {framework}",
        "description": (f"kernel latencies measured on {gpu} by NVIDIA aiconfigurator, timed as CUDA-graph "
                        "replays (no host launch cost), imported by calibration/public_import.py"),
        "timing": "CUDA-graph replay",
        "device_fingerprint": {"gpu": gpu},
        "versions": {PACKAGE: PACKAGE_VERSION, framework: ", ".join(versions)},
        "framework": framework, "framework_choice": why, "tables": read,
        "selection": ("bf16 GEMM on a lattice of round m, n, k, one kernel source; attention: bf16 compute and KV "
                      "cache, no sliding window, multi-head and grouped-query rows (their KV-head count kept), each kernel "
                      "source to the implementation it names; equal shapes (and attention batch x heads) merged "
                      "at their median"),
        "citations": [f"{PACKAGE}=={PACKAGE_VERSION} (PyPI, Apache-2.0, Copyright NVIDIA CORPORATION & "
                      "AFFILIATES): aiconfigurator_core/systems/data/" + r["file"] for r in read]
                     + ["calibration/public/aiconfigurator/NOTICE",
                        "calibration/profiles/h100-sxm.json: the kinds the tables lack, scaled to this device "
                        "(calibration/scaled_kinds.py)"],
    }


def import_public(system: str, framework: str | None = None, data_dir: Path | None = None) -> dict:
    """The profile of one aiconfigurator system."""
    if system not in SYSTEMS:
        raise UserError(f"--system: unknown {system!r}; choose from {', '.join(SYSTEMS)} or all")
    system_dir = Path(data_dir or default_data_dir()) / system
    framework, why = choose_framework(system_dir, framework)
    kinds, read = read_system(system_dir, framework)
    if not kinds.get("linear") or not any(k.startswith("attention_") for k in kinds):
        raise UserError(f"{system} ({framework}): no usable GEMM or attention rows")
    dev = catalog_device(SYSTEMS[system][0])
    entries = {k: kind_entry(k, shapes, dev, backend_of(k, framework, read)) for k, shapes in sorted(kinds.items())}
    entries.update(transferred(entries, dev, data_dir, framework))
    gpu = next((r["device"] for r in read if r["device"]), system)
    host = {"s_per_kernel": dev.host_us_per_kernel * 1e-6, "s_per_op": dev.host_us_per_op * 1e-6,
            "included_in_kernel_times": False, "source": dev.host_source}
    return profile_document(dev.name, DTYPE, provenance(system, framework, why, read, gpu), host, entries, [],
                            attention_default(read))


def transferred(entries: dict, dev, data_dir: Path | None, framework: str) -> dict:
    """The kinds the tables lack, from the measured H100 profile (calibration/scaled_kinds.py)."""
    target_linear = Curve(**entries["linear"]["curve"])
    h100_linear = target_linear if dev.name == "h100-sxm" else h100_public_linear(data_dir, framework)
    measured = load_profile(MEASURED_H100)
    return scaled_kinds(measured, target_linear, h100_linear, dev, catalog_device("h100-sxm"), DTYPE, set(entries))


@cache
def h100_public_linear(data_dir: Path | None, framework: str) -> Curve:
    """The H100's linear curve fitted to the same framework's public GEMM table: the reference of the GEMM rule."""
    system_dir = Path(data_dir or default_data_dir()) / "h100_sxm"
    kinds, read = read_system(system_dir, choose_framework(system_dir, framework)[0])
    return Curve(**kind_entry("linear", kinds["linear"], catalog_device("h100-sxm"), "")["curve"])


def measured(path: Path) -> bool:
    """Whether a profile is a measurement of its device (a derived one is rebuilt by `calibration derive`)."""
    return load_profile(path)["provenance"]["source"] == "measured"


def import_and_write(system: str, framework: str | None, data_dir: Path | None, out: Path | None) -> list[Path]:
    """Write the profile of `system` (every known system for 'all') and return the files written."""
    written = []
    # The H100 first: every other system's missing kinds are its own profile's, reconciled with its tables.
    for name in (sorted(SYSTEMS, key=lambda n: n != "h100_sxm") if system == "all" else [system]):
        path = out if (out is not None and system != "all") else (out or PROFILES) / SYSTEMS[name][1]
        if system == "all" and out is not None:
            out.mkdir(parents=True, exist_ok=True)
        profile = import_public(name, framework, data_dir)
        write(path, profile)
        written.append(path)
        own = PROFILES / catalog().get(SYSTEMS[name][0]).profile
        if system == "all" and out is None and own != path and own.is_file() and measured(own):
            merged = add_public_attention(load_profile(own), profile, f"calibration/profiles/{path.name}")
            write(own, declare_launch_excess(merged, profile))
            written.append(own)
    return written


__all__ = ["SYSTEMS", "TABLES", "import_public", "import_and_write"]
