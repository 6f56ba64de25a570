"""device-choice: which GPU for this model: seconds per request by device, attention implementation and runtime.

Every GPU of the catalog (CPUs skipped) costs one request of SD v1.5 and of
LLaMA-2-7B (each workload's default knobs) under each runtime (eager, CUDA
graphs) and each attention implementation the device's cost model has, plus
`default`, which resolves per shape class to the profile's default (recorded
per row). Each row also says where the device time comes from (the share of
kernel seconds per time source: measured, scaled, derived, curve, datasheet)
and the device's cost source (a measured or derived profile, or the
datasheet roofline). Each (device, workload, runtime, attention) is costed
once; a named implementation that `default` resolves to in every shape class
of a workload is the same costing and reuses its times.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.attention import DEFAULT_ATTENTION, SHAPE_CLASSES, shape_class
from emulator.cost import CostModel, stage_time
from emulator.cost.costing import cost_source
from emulator.cost.model import TIME_SOURCES
from emulator.cost.runtime import CUDA_GRAPHS, EAGER, RUNTIMES, Runtime
from emulator.cost.timeline import CallTime, sum_calls
from emulator.devices import catalog
from emulator.pipeline import Pipeline
from experiments.common import ATTENTIONS, Result, markdown_table, model, pyplot, save, write_csv
from workloads import build

NAME = "device-choice"
TITLE = "Which GPU for this model: time per request by device, attention implementation and runtime"
WORKLOADS = {"stable-diffusion": "SD", "llama2-7b": "LLaMA"}  # name -> short label; default knobs
SHARES = tuple(f"{s}_share" for s in TIME_SOURCES)
COLUMNS = ("device", "workload", "runtime", "attention", "attention_resolved", "time_per_request_s", "device_s",
           "host_idle_s", *SHARES, "cost_source")
TABLE_COLUMNS = ("device", "SD eager (s)", "SD CUDA graphs (s)", "SD CUDA graphs by attention (s)",
                 "LLaMA eager (s)", "LLaMA CUDA graphs (s)", "default attention",
                 "measured share of device time (SD / LLaMA)", "source")
REFERENCE = "h100-sxm"  # the GPU the finding compares against


def gpus() -> list[str]:
    """Catalog devices of kind gpu, in catalog order."""
    return [name for name, d in catalog().items() if d.kind == "gpu"]


def implementations(device: str) -> tuple[str, ...]:
    """The attention implementations the device's cost model has kernels for (a roofline: baseline and flash,
    since it costs every fused implementation alike)."""
    return tuple(getattr(model(device, DEFAULT_ATTENTION), "implementations", ATTENTIONS))


def request(pipeline: Pipeline, cost: CostModel, runtime: Runtime) -> CallTime:
    """One request under a runtime: every stage's calls, summed."""
    return sum_calls([stage_time(s, cost, runtime=runtime)[1] for s in pipeline.stages])


def resolved(pipeline: Pipeline, cost: CostModel) -> dict[str, str]:
    """{shape class: implementation} the cost model costs the pipeline's attention calls as."""
    found = {shape_class(op.shape): cost.implementation(op.shape)
             for s in pipeline.stages for op in s.graph().attention_ops}
    return {c: found[c] for c in SHAPE_CLASSES if c in found}


def resolved_text(by_class: dict[str, str]) -> str:
    return ";".join(f"{c}={i}" for c, i in by_class.items())


def row(device: str, workload: str, runtime: str, attention: str, by_class: dict, t: CallTime, source: str) -> dict:
    shares = {f"{s}_share": t.by_source_s.get(s, 0.0) / t.device_s if t.device_s else 0.0 for s in TIME_SOURCES}
    return {"device": device, "workload": workload, "runtime": runtime, "attention": attention,
            "attention_resolved": resolved_text(by_class), "time_per_request_s": t.seconds, "device_s": t.device_s,
            "host_idle_s": t.host_idle_s, **shares, "cost_source": source}


def device_rows(device: str, pipelines: list[Pipeline]) -> list[dict]:
    """Rows of one device: each workload x attention (default first) x runtime, each costed once."""
    source = cost_source(device)["source"]
    default = model(device, DEFAULT_ATTENTION)
    rows = []
    for p in pipelines:
        defaults = resolved(p, default)
        times: dict[tuple[str, str], CallTime] = {}
        for attention in (DEFAULT_ATTENTION, *implementations(device)):
            # baseline launches more kernels than a resolved default counts, so it is never the same costing
            same = attention != "baseline" and set(defaults.values()) == {attention}
            by_class = defaults if attention == DEFAULT_ATTENTION else {c: attention for c in defaults}
            for name, runtime in RUNTIMES.items():
                t = times[(DEFAULT_ATTENTION, name)] if same else request(p, model(device, attention), runtime)
                times[(attention, name)] = t
                rows.append(row(device, p.workload, name, attention, by_class, t, source))
    return rows


def pick(rows: list[dict], device: str, workload: str, runtime: str, attention: str = DEFAULT_ATTENTION) -> dict:
    return next(r for r in rows if (r["device"], r["workload"], r["runtime"], r["attention"])
                == (device, workload, runtime, attention))


def default_text(rows: list[dict], device: str) -> str:
    """What default attention resolved to on the device, over both workloads: one name, or one per class."""
    by_class: dict[str, str] = {}
    for r in rows:
        if r["device"] == device and r["attention"] == DEFAULT_ATTENTION:
            by_class.update(dict(pair.split("=") for pair in r["attention_resolved"].split(";") if pair))
    names = set(by_class.values())
    return names.pop() if len(names) == 1 else ", ".join(f"{c} {by_class[c]}" for c in SHAPE_CLASSES if c in by_class)


def table_row(rows: list[dict], device: str) -> dict:
    sd, llama = WORKLOADS
    graphs = CUDA_GRAPHS.name
    by_attention = ", ".join(f"{a} {pick(rows, device, sd, graphs, a)['time_per_request_s']:.2f}"
                             for a in implementations(device))
    share = " / ".join(f"{pick(rows, device, w, graphs)['measured_share']:.0%}" for w in WORKLOADS)
    return {"device": f"`{device}`", "SD eager (s)": pick(rows, device, sd, EAGER.name)["time_per_request_s"],
            "SD CUDA graphs (s)": pick(rows, device, sd, graphs)["time_per_request_s"],
            "SD CUDA graphs by attention (s)": by_attention,
            "LLaMA eager (s)": pick(rows, device, llama, EAGER.name)["time_per_request_s"],
            "LLaMA CUDA graphs (s)": pick(rows, device, llama, graphs)["time_per_request_s"],
            "default attention": default_text(rows, device),
            "measured share of device time (SD / LLaMA)": share,
            "source": pick(rows, device, sd, graphs)["cost_source"]}


def table(rows: list[dict], devices: list[str]) -> str:
    seconds = {c: "{:.2f}" for c in TABLE_COLUMNS if c.endswith("(s)") and "by attention" not in c}
    return markdown_table(TABLE_COLUMNS, [table_row(rows, d) for d in devices], seconds)


def plot(rows: list[dict], devices: list[str], out: Path) -> Path:
    """Grouped bars: each workload's seconds per request under CUDA graphs (default attention) per device,
    eager as a marker above or below each bar; log scale."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(12, 5))
    x = np.arange(len(devices))
    width = 0.38
    for j, (workload, label) in enumerate(WORKLOADS.items()):
        pos = x + (j - 0.5) * width
        graphs = [pick(rows, d, workload, CUDA_GRAPHS.name)["time_per_request_s"] for d in devices]
        eager = [pick(rows, d, workload, EAGER.name)["time_per_request_s"] for d in devices]
        ax.bar(pos, graphs, width, color=f"C{j}", label=f"{label}, CUDA graphs")
        ax.scatter(pos, eager, marker="_", s=300, linewidths=2.5, color="k" if j == 0 else "dimgray",
                   label=f"{label}, eager", zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(x, devices, rotation=30, ha="right")
    ax.set(ylabel="seconds per request (log)",
           title="SD v1.5 (512x512, 50 steps) and LLaMA-2-7B (512 in, 128 out), default attention")
    ax.legend(fontsize=8, ncol=2)
    return save(fig, out / f"{NAME}.png")


def fastest_attention(rows: list[dict], devices: list[str]) -> str:
    """Which named implementation is fastest for SD under CUDA graphs, grouped by device."""
    sd = next(iter(WORKLOADS))
    best: dict[str, list[str]] = {}
    for d in devices:
        name = min(implementations(d), key=lambda a: pick(rows, d, sd, CUDA_GRAPHS.name, a)["time_per_request_s"])
        best.setdefault(name, []).append(d)
    if len(best) == 1:
        (name, _), = best.items()
        choices = sorted({a for d in devices for a in implementations(d)})
        return f"{name} on every GPU (of {', '.join(choices)})"
    return "; ".join(f"{name} on {', '.join(ds)}" for name, ds in sorted(best.items(), key=lambda kv: -len(kv[1])))


def finding(rows: list[dict], devices: list[str]) -> str:
    def t(d, w, rt=CUDA_GRAPHS.name):
        return pick(rows, d, w, rt)["time_per_request_s"]

    sd, llama = WORKLOADS
    best_sd, best_llama = min(devices, key=lambda d: t(d, sd)), min(devices, key=lambda d: t(d, llama))
    ref = REFERENCE if REFERENCE in devices else max(devices, key=lambda d: t(d, sd))
    eager_best = min(devices, key=lambda d: t(d, sd, EAGER.name))
    return (f"Under CUDA graphs with each GPU's default attention, {best_sd} is fastest for SD v1.5 "
            f"({t(best_sd, sd):.2f} s per request, {t(ref, sd) / t(best_sd, sd):.1f}x faster than the {ref}'s "
            f"{t(ref, sd):.2f} s) and {best_llama} for LLaMA-2-7B ({t(best_llama, llama):.2f} s, "
            f"{t(ref, llama) / t(best_llama, llama):.1f}x the {ref}); eager, the best GPU for SD ({eager_best}) is "
            f"only {t(ref, sd, EAGER.name) / t(eager_best, sd, EAGER.name):.2f}x faster than the {ref}, the host's "
            f"dispatch setting the pace; the fastest SD attention under CUDA graphs is "
            f"{fastest_attention(rows, devices)}.")


def run(device: str, out: Path) -> Result:
    """`device` is ignored: the experiment spans every GPU of the catalog, each with its shipped cost model."""
    devices = gpus()
    pipelines = [build(w) for w in WORKLOADS]
    rows = [r for d in devices for r in device_rows(d, pipelines)]
    csvs = [write_csv(out / f"{NAME}.csv", COLUMNS, rows)]
    pngs = [plot(rows, devices, out)]
    return Result(NAME, TITLE, finding(rows, devices), csvs, pngs, table(rows, devices))
