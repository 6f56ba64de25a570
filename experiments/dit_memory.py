"""dit-memory: the GPU memory one request of each diffusion transformer needs, and which GPUs hold it.

Per stage (text encoder(s), transformer, VAE decoder) at default knobs: its
parameters and weight bytes (parameters x the workload's dtype bytes; bf16 and
fp16 are 2 bytes), and its peak activation bytes over one call with fused
(flash) attention, and with baseline attention, which also holds each
similarity matrix while it runs (`OpGraph.peak_activation_bytes`; graph inputs
not counted). Two ways to run a request on one GPU:

- resident: every stage's weights stay on the GPU; the need is all weights plus
  the largest peak activation of any stage (stages run one after another);
- offloaded: only the running stage's weights are on the GPU (diffusers'
  model CPU offload); the need is the largest stage weights + its activations.

A GPU fits a way when the need is at most its memory. Capacities are the
datasheets' decimal GB (1 GB = 1e9 bytes), as are the GB columns; the CUDA
context, allocator slack and framework buffers are not counted, and no VAE
tiling or sequence parallelism is assumed.
"""

from __future__ import annotations

from pathlib import Path

from emulator.ops import DTYPE_BYTES
from emulator.pipeline import Pipeline
from experiments.common import Result, markdown_table, pyplot, save, write_csv
from experiments.dit_breakdown import DITS, GROUPS, stage_group
from workloads import build

NAME = "dit-memory"
TITLE = "Diffusion transformers: weights, peak activations and which GPUs fit one request"
GB = 1e9
GPUS_GB = (24, 48, 80, 141, 180)  # L4 / RTX 4090, L40S, A100 / H100, H200, B200
COLUMNS = ("workload", "stage", "dtype", "dtype_bytes", "params", "weights_GB", "peak_activation_GB",
           "peak_activation_baseline_GB")
FIT_COLUMNS = ("workload", "gpu_GB", "weights_GB", "peak_activation_GB", "resident_need_GB", "offloaded_need_GB",
               "fits_resident", "fits_offloaded")


def stage_rows(p: Pipeline) -> list[dict]:
    """One row per stage group: its weights (shared weights once) and its largest call's activations."""
    dtype = str(p.params["dtype"])
    rows: dict[str, dict] = {}
    seen: set[str] = set()
    for s in p.stages:
        g = s.graph(call=s.calls - 1)
        params = 0 if s.weights in seen else g.totals.params
        seen.add(s.weights)
        r = rows.setdefault(stage_group(s.name), {
            "workload": p.workload, "stage": stage_group(s.name), "dtype": dtype, "dtype_bytes": DTYPE_BYTES[dtype],
            "params": 0, "weights_GB": 0.0, "peak_activation_GB": 0.0, "peak_activation_baseline_GB": 0.0})
        r["params"] += params
        r["weights_GB"] = r["params"] * DTYPE_BYTES[dtype] / GB
        r["peak_activation_GB"] = max(r["peak_activation_GB"], g.peak_activation_bytes("flash") / GB)
        r["peak_activation_baseline_GB"] = max(r["peak_activation_baseline_GB"],
                                               g.peak_activation_bytes("baseline") / GB)
    return [rows[k] for k in GROUPS if k in rows]


def needs(stages: list[dict]) -> dict:
    """Weights, peak activations and the resident and offloaded needs (GB) of one workload's stage rows."""
    weights = sum(r["weights_GB"] for r in stages)
    peak = max(r["peak_activation_GB"] for r in stages)
    return {"workload": stages[0]["workload"], "weights_GB": weights, "peak_activation_GB": peak,
            "resident_need_GB": weights + peak,
            "offloaded_need_GB": max(r["weights_GB"] + r["peak_activation_GB"] for r in stages)}


def fit_rows(need: dict) -> list[dict]:
    return [need | {"gpu_GB": gpu, "fits_resident": need["resident_need_GB"] <= gpu,
                    "fits_offloaded": need["offloaded_need_GB"] <= gpu} for gpu in GPUS_GB]


def verdict(need: dict, gpu: int) -> str:
    if need["resident_need_GB"] <= gpu:
        return "yes"
    return "offloaded" if need["offloaded_need_GB"] <= gpu else "no"


def table_rows(stages: list[dict], need: dict) -> dict:
    by = {r["stage"]: r for r in stages if r["workload"] == need["workload"]}
    peak = max(by.values(), key=lambda r: r["peak_activation_GB"])
    return {"workload": need["workload"], "dtype": peak["dtype"],
            **{f"{g} weights (GB)": by[g]["weights_GB"] if g in by else None for g in GROUPS},
            "weights (GB)": need["weights_GB"], "peak activations (GB)": need["peak_activation_GB"],
            "peak in": peak["stage"],
            "transformer activations (GB)": by["transformer"]["peak_activation_GB"],
            "resident (GB)": need["resident_need_GB"],
            "offloaded (GB)": need["offloaded_need_GB"], **{f"{gpu} GB": verdict(need, gpu) for gpu in GPUS_GB}}


def plot(stages: list[dict], needs_: list[dict], out: Path) -> Path:
    """Horizontal stacked bars: weights per stage group plus the peak activations, GPU sizes as lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.5))
    ys = range(len(needs_))
    left = [0.0] * len(needs_)
    for i, g in enumerate(GROUPS):
        w = [sum(r["weights_GB"] for r in stages if r["workload"] == n["workload"] and r["stage"] == g) for n in needs_]
        ax.barh(ys, w, left=left, color=f"C{i}", label=f"{g} weights")
        left = [a + b for a, b in zip(left, w)]
    ax.barh(ys, [n["peak_activation_GB"] for n in needs_], left=left, color="C3", alpha=0.6,
            label="peak activations (flash)")
    for gpu in GPUS_GB:
        ax.axvline(gpu, color="k", ls=":", lw=0.8)
        ax.text(gpu, len(needs_) - 0.4, f"{gpu} GB", fontsize=7, ha="center")
    ax.set_yticks(ys, [n["workload"] for n in needs_], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="GB (1e9 bytes) with every stage resident", title="Memory of one request at default knobs")
    ax.legend(fontsize=7, loc="lower right")
    return save(fig, out / f"{NAME}.png")


def smallest_gpu(need_gb: float) -> str:
    return next((f"{g} GB" for g in GPUS_GB if need_gb <= g), "none")


def finding(stages: list[dict], table: list[dict]) -> str:
    dtype_bytes = sorted({r["dtype_bytes"] for r in stages})
    peaks = sorted({r["peak in"] for r in table})
    heavy = max(table, key=lambda r: r["peak activations (GB)"])
    dit = max(table, key=lambda r: r["transformer activations (GB)"])
    resident = ", ".join(f"{r['workload']} {smallest_gpu(r['resident (GB)'])}" for r in table)
    gains = [f"{r['workload']} {smallest_gpu(r['offloaded (GB)'])}" for r in table
             if smallest_gpu(r["offloaded (GB)"]) != smallest_gpu(r["resident (GB)"])]
    return (f"At {'/'.join(map(str, dtype_bytes))} bytes per parameter the weights take "
            f"{min(r['weights (GB)'] for r in table):.1f}-{max(r['weights (GB)'] for r in table):.1f} GB, "
            f"and the activation peak of every request is in its {' or '.join(peaks)}, untiled (largest "
            f"{heavy['workload']}'s {heavy['peak activations (GB)']:.0f} GB; the transformer's at most "
            f"{dit['transformer activations (GB)']:.0f} GB, {dit['workload']}); with every stage resident the "
            f"smallest GPU that holds a request is: {resident}; offloading idle stages moves "
            f"{', '.join(gains) or 'none'}.")


def run(device: str, out: Path) -> Result:
    """`device` is ignored: memory depends on the graphs alone."""
    stages = [r for name in DITS for r in stage_rows(build(name))]
    needs_ = [needs([r for r in stages if r["workload"] == n]) for n in DITS]
    fits = [r for n in needs_ for r in fit_rows(n)]
    table = [table_rows(stages, n) for n in needs_]
    csvs = [write_csv(out / f"{NAME}.csv", COLUMNS, stages), write_csv(out / f"{NAME}-fit.csv", FIT_COLUMNS, fits)]
    columns = tuple(table[0])
    formats = {c: "{:.1f}" for c in columns if c.endswith("(GB)")}
    return Result(NAME, TITLE, finding(stages, table), csvs, [plot(stages, needs_, out)],
                  markdown_table(columns, table, formats))
