"""`python -m calibration import-collectives`: a GPU's NCCL collective latencies from aiconfigurator's tables.

NVIDIA's aiconfigurator-core (Apache-2.0) ships, per system,
systems/data/<system>/comm/nccl/<NCCL version>/nccl_perf.parquet: latencies
(ms) of all_gather, all_reduce, reduce_scatter and alltoall on 2, 4 and 8
GPUs of one node (2 and 4 on GB200/GB300), measured with nccl-tests
(`<op>_perf -b S -e S -t <gpus> -d half -w 40 -n <iters> -c 0`, one process
driving every GPU, out-of-place time averaged over iterations and ranks,
launches included, no CUDA graph). Its `message_size` is in elements: the
nccl-tests size (the whole buffer: all_gather's gathered output,
reduce_scatter's input) divided by the element width. Verified on the data:
the half rows at N elements take the time of the int8 rows at 2N, and at
N = 2^28 (512 MiB) the 8-GPU H100 all_reduce runs at a bus bandwidth of
445 GB/s (2 (P-1)/P x bytes / time), NVLink 4's 450 GB/s each way.

This importer keeps the half-precision rows of the newest NCCL version, the
median where a (op, GPUs, size) repeats, and writes them per device to
calibration/profiles/collectives/<device>.json, outside the kernel profile
schema (a collective is not a kernel kind of one GPU: it is keyed by op and
GPU count and its size is a message, not a shape):

    {"schema": "genai-emulator.collectives", "version": 1, "device": "h100-sxm",
     "dtype": "fp16", "provenance": {...},
     "ops": {"all_reduce": {"8": [[message_bytes, seconds], ...], ...}, ...}}

`message_bytes` is the whole buffer in bytes (2 x message_size); ops are
named as emulator.shapes.Collective names them (alltoall -> all_to_all).
Needs pyarrow (the `public` extra) and the unpacked wheel.
"""

from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

from calibration.public_import import PACKAGE, PACKAGE_VERSION, SYSTEMS, default_data_dir
from calibration.public_tables import read_rows, version_key
from emulator.errors import UserError

SCHEMA = "genai-emulator.collectives"
VERSION = 1
OUT = Path(__file__).with_name("profiles") / "collectives"
TABLE = "nccl_perf.parquet"
HALF_BYTES = 2  # nccl_dtype 'half'
OP_NAMES = {"all_gather": "all_gather", "all_reduce": "all_reduce", "reduce_scatter": "reduce_scatter",
            "alltoall": "all_to_all"}
TIMING = ("nccl-tests <op>_perf, one process driving every GPU (-t <gpus>), -d half, 40 warm-up iterations, "
          "out-of-place time averaged over the iterations and the ranks, kernel launches included, no CUDA graph")


def newest_table(system_dir: Path) -> tuple[str, Path] | None:
    """(NCCL version, file) of the newest version with an NCCL table, or None."""
    root = system_dir / "comm" / "nccl"
    found = sorted(root.glob(f"*/{TABLE}"), key=lambda p: version_key(p.parent.name)) if root.is_dir() else []
    return (found[-1].parent.name, found[-1]) if found else None


def table_ops(rows: list[dict]) -> tuple[dict, dict]:
    """({op: {gpus: [[message_bytes, seconds], ...]}} of the half rows, by size; {op: rows kept})."""
    times: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    counts: dict = defaultdict(int)
    for r in rows:
        if r["nccl_dtype"] != "half" or r["op_name"] not in OP_NAMES:
            continue
        op = OP_NAMES[r["op_name"]]
        times[op][str(r["num_gpus"])][int(r["message_size"]) * HALF_BYTES].append(float(f"{r['latency'] * 1e-3:.9g}"))
        counts[op] += 1
    ops = {op: {gpus: [[size, statistics.median(ts)] for size, ts in sorted(by_size.items())]
                for gpus, by_size in sorted(by_gpus.items(), key=lambda kv: int(kv[0]))}
           for op, by_gpus in sorted(times.items())}
    return ops, dict(counts)


def provenance(system: str, version: str, path: Path, data_dir: Path, rows: list[dict], kept: dict) -> dict:
    gpu = next((r.get("device") for r in rows if r.get("device")), system)
    file = path.relative_to(data_dir).as_posix()
    return {
        "source": "measured",
        "method": f"python -m calibration import-collectives --system {system}",
        "description": (f"NCCL collective latencies measured on {gpu} by NVIDIA aiconfigurator, imported by "
                        "calibration/public_collectives.py"),
        "device_fingerprint": {"gpu": gpu},
        "versions": {PACKAGE: PACKAGE_VERSION, "nccl": version},
        "file": file,
        "timing": TIMING,
        "message_size": ("aiconfigurator's message_size is elements (nccl-tests bytes / element width) of the "
                         "whole buffer; message_bytes = 2 x message_size for the half rows kept"),
        "selection": "nccl_dtype half, newest NCCL version, repeated (op, GPUs, size) rows at their median",
        "rows_by_op": kept,
        "citations": [f"{PACKAGE}=={PACKAGE_VERSION} (PyPI, Apache-2.0, Copyright NVIDIA CORPORATION & "
                      f"AFFILIATES): aiconfigurator_core/systems/data/{file}",
                      "calibration/public/aiconfigurator/NOTICE"],
    }


def import_collectives(system: str, data_dir: Path | None = None) -> dict | None:
    """The collectives document of one aiconfigurator system; None when it has no NCCL table."""
    if system not in SYSTEMS:
        raise UserError(f"--system: unknown {system!r}; choose from {', '.join(SYSTEMS)} or all")
    data_dir = Path(data_dir or default_data_dir())
    found = newest_table(data_dir / system)
    if found is None:
        return None
    version, path = found
    rows = read_rows(path)
    ops, kept = table_ops(rows)
    if not ops:
        raise UserError(f"{path}: no half-precision rows")
    return {"schema": SCHEMA, "version": VERSION, "device": SYSTEMS[system][0], "dtype": "fp16",
            "provenance": provenance(system, version, path, data_dir, rows, kept), "ops": ops}


def dumps(doc: dict) -> str:
    """JSON with one line per (op, GPU count): the size-latency pairs inline."""
    text = json.dumps(doc, indent=1)
    return re.sub(r"\[\s+(\d+),\s+([^\s\]]+)\s+\]", r"[\1, \2]", text) + "\n"


def import_and_write(system: str, data_dir: Path | None, out: Path | None = None) -> list[Path]:
    """Write the collectives file of `system` (every known system with a table for 'all'); the files written."""
    written = []
    for name in (sorted(SYSTEMS) if system == "all" else [system]):
        doc = import_collectives(name, data_dir)
        if doc is None:
            if system != "all":
                raise UserError(f"{name}: no NCCL table under comm/nccl")
            continue
        folder = out or OUT
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{doc['device']}.json"
        path.write_text(dumps(doc))
        written.append(path)
    return written


__all__ = ["SCHEMA", "VERSION", "import_collectives", "import_and_write"]
