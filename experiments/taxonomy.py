"""taxonomy: Table I for the whole suite, counted from the graphs, with classes from emulated numbers.

Parameters are counted from each pipeline's graphs (shared weights once);
FLOPs and time are one request at the workload's defaults on the device.
Classes are derived, not assigned: compute-bound where one call of the stage
that runs most (a denoising step, a decode step) does more FLOPs per byte of
that stage's parameters than the device's ridge point (peak FLOP/s over
bandwidth): each call reads its weights again, so the per-call ratio, not the
per-request one, says which roof binds. Memory class by
the share of the device's memory the weights take, latency class by the
request time (interactive under 1 s, seconds under 10 s, long beyond).
"""

from __future__ import annotations

from pathlib import Path

from experiments.common import (
    Result,
    markdown_table,
    model,
    pyplot,
    request_time,
    save,
    write_csv,
)
from workloads import STUDY_SUITE, build, get

NAME = "taxonomy"
TITLE = "Taxonomy of the suite (Table I)"
COLUMNS = ("workload", "klass", "stages", "params", "param_bytes", "flops_per_request",
           "intensity_flops_per_param_byte", "loop_stage", "loop_call_flops_per_param_byte", "time_per_request_s",
           "attained_tflops", "compute_class", "memory_class", "latency_class")


def classes(intensity: float, ridge: float, param_bytes: float, memory_bytes: float, seconds: float):
    compute = "compute-bound" if intensity > ridge else "memory-bound"
    share = param_bytes / memory_bytes
    memory = "large (>25% of HBM)" if share > 0.25 else "medium (5-25%)" if share > 0.05 else "small (<5%)"
    latency = "interactive (<1 s)" if seconds < 1 else "seconds (<10 s)" if seconds < 10 else "long (>=10 s)"
    return compute, memory, latency


def run(device: str, out: Path) -> Result:
    cost = model(device, "flash")
    dev = cost.device
    ridge = dev.matmul_flops_per_s("fp16") / dev.bytes_per_s
    rows = []
    for name in STUDY_SUITE:
        w, p = get(name), build(name)
        flops = p.request_totals().flops
        param_bytes = sum({s.weights: s.graph().totals.weight_bytes for s in p.stages}.values())
        seconds = request_time(p, cost).seconds
        loop = max(p.stages, key=lambda s: s.calls)
        loop_totals = loop.graph().totals
        per_call = loop_totals.flops / loop_totals.weight_bytes
        compute, memory, latency = classes(per_call, ridge, param_bytes, dev.memory_bytes, seconds)
        rows.append({"workload": name, "klass": w.klass, "stages": " + ".join(s.name for s in p.stages),
                     "params": p.params_total, "param_bytes": param_bytes, "flops_per_request": flops,
                     "intensity_flops_per_param_byte": flops / param_bytes, "loop_stage": loop.name,
                     "loop_call_flops_per_param_byte": per_call, "time_per_request_s": seconds,
                     "attained_tflops": flops / seconds / 1e12, "compute_class": compute,
                     "memory_class": memory, "latency_class": latency})
    csv = write_csv(out / f"{NAME}.csv", COLUMNS, rows)

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    names = [r["workload"] for r in rows]
    a.bar(names, [r["params"] / 1e9 for r in rows], color="tab:blue")
    a.set(title="Parameters (counted from the graphs)", ylabel="parameters (billions)")
    b.bar(names, [r["time_per_request_s"] for r in rows], color="tab:orange")
    b.set(title=f"Time per request on {dev.name} (flash attention)", ylabel="seconds (log)", yscale="log")
    for ax in (a, b):
        ax.tick_params(axis="x", rotation=40)
    png = save(fig, out / f"{NAME}.png")

    bound = [r["workload"] for r in rows if r["compute_class"] == "compute-bound"]
    finding = (f"Per call of their main loop, {len(bound)} of {len(rows)} workloads do more FLOPs per parameter "
               f"byte than the {dev.name}'s ridge point of {ridge:.0f} ({', '.join(bound)}); the largest model by "
               f"parameters is {max(rows, key=lambda r: r['params'])['workload']} and the slowest request "
               f"{max(rows, key=lambda r: r['time_per_request_s'])['workload']}.")
    table = markdown_table(("workload", "params", "flops_per_request", "loop_call_flops_per_param_byte",
                            "time_per_request_s", "compute_class", "memory_class", "latency_class"), rows,
                           {"params": "{:.3g}", "flops_per_request": "{:.3g}", "time_per_request_s": "{:.3g}",
                            "loop_call_flops_per_param_byte": "{:.0f}"})
    return Result(NAME, TITLE, finding, [csv], [png], table)
