"""roofline: every model on the device roofline, arithmetic intensity against attained TFLOP/s.

Intensity as the study defines it: FLOPs of one inference over the bytes of the
parameters it needs. Two points per workload and batch: the whole request (the
study's definition) and one call of its main loop (one denoising or decode
step), which reads the weights once and so places the bound. Attained TFLOP/s
is FLOPs over the emulated time. The roofs are the device's fp16 matrix peak
and its HBM bandwidth times intensity.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.cost import stage_time
from experiments.common import Result, model, pyplot, request_time, save, write_csv
from workloads import STUDY_SUITE, build

NAME = "roofline"
TITLE = "The suite on the device roofline"
COLUMNS = ("workload", "batch", "scope", "flops", "param_bytes", "intensity_flops_per_byte", "time_s",
           "attained_tflops", "roof_tflops")
BATCHES = (1, 4, 16)


def run(device: str, out: Path, batches=BATCHES) -> Result:
    cost = model(device, "flash")
    dev = cost.device
    peak, bandwidth = dev.matmul_flops_per_s("fp16"), dev.bytes_per_s
    rows = []
    for name in STUDY_SUITE:
        for batch in batches:
            p = build(name, batch=batch)
            param_bytes = sum({s.weights: s.graph().totals.weight_bytes for s in p.stages}.values())
            loop = max(p.stages, key=lambda s: s.calls)
            loop_bytes = loop.graph().totals.weight_bytes
            scopes = (("request", p.request_totals().flops, param_bytes, request_time(p, cost).seconds),
                      (f"one {loop.name} call", loop.graph().totals.flops, loop_bytes,
                       stage_time(loop, cost)[0].seconds))
            for scope, flops, moved, seconds in scopes:
                intensity = flops / moved
                rows.append({"workload": name, "batch": batch, "scope": scope, "flops": flops,
                             "param_bytes": moved, "intensity_flops_per_byte": intensity, "time_s": seconds,
                             "attained_tflops": flops / seconds / 1e12,
                             "roof_tflops": min(peak, intensity * bandwidth) / 1e12})
    csv = write_csv(out / f"{NAME}.csv", COLUMNS, rows)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    xs = [r["intensity_flops_per_byte"] for r in rows]
    x = np.logspace(np.log10(min(xs)) - 0.5, np.log10(max(xs)) + 0.5, 200)
    ax.plot(x, np.minimum(peak, x * bandwidth) / 1e12, "k-", lw=2, label=f"{dev.name} roof")
    colors = plt.get_cmap("tab10")
    for i, name in enumerate(STUDY_SUITE):
        for scope_kind, marker, fill in (("request", "o", True), ("call", "s", False)):
            pts = [r for r in rows if r["workload"] == name and (r["scope"] == "request") == (scope_kind == "request")]
            ax.plot([r["intensity_flops_per_byte"] for r in pts], [r["attained_tflops"] for r in pts],
                    marker=marker, ls=":", color=colors(i), mfc=colors(i) if fill else "none",
                    label=name if scope_kind == "request" else None)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOPs per parameter byte)",
           ylabel="attained TFLOP/s",
           title=f"Roofline on {dev.name}: filled = whole request, hollow = one main-loop call; "
                 f"batch {', '.join(map(str, batches))}")
    ax.legend(fontsize=8, ncol=2)
    png = save(fig, out / f"{NAME}.png")

    calls = [r for r in rows if r["scope"] != "request" and r["batch"] == batches[0]]
    low = min(calls, key=lambda r: r["intensity_flops_per_byte"])
    high = max(calls, key=lambda r: r["attained_tflops"])
    finding = (f"At batch {batches[0]}, one main-loop call of {low['workload']} does only "
               f"{low['intensity_flops_per_byte']:.1f} FLOPs per parameter byte and attains "
               f"{low['attained_tflops']:.2f} TFLOP/s, while {high['workload']} attains "
               f"{high['attained_tflops']:.0f} TFLOP/s of the {peak / 1e12:.0f} peak.")
    return Result(NAME, TITLE, finding, [csv], [png])
