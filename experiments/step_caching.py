"""step-caching: request speed-up against the share of denoiser calls computed in full, on one GPU and with
Ulysses sequence parallelism.

FLUX.1-dev and Wan 2.1 14B at their default knobs run their transformer under
each published caching preset for the model (`emulator.cache_presets`) and under
a sweep of `share=S` schedules (S of the steps computed in full, the rest reuse
the cached residual: only the ops outside the blocks plus one add run). Each
kind of call is costed on its own graph (`emulator.schedule_cost`), once on one
GPU and once as one rank of `transformer:ulysses=4`: the rank's stage from
`emulator.parallel.stage.rank_stage` with the same schedule, its uncached time
checked against `emulator.parallel.stage.summary`. Other stages run on one GPU.
The emulator costs work only: it says nothing of the image or video quality a
schedule gives.
"""

from __future__ import annotations

from pathlib import Path

from emulator.cache_presets import PRESETS
from emulator.parallel.plan import parse_plan
from emulator.parallel.stage import rank_stage, summary
from emulator.schedule_cost import scheduled_stage_time
from experiments.common import Result, markdown_table, model, pyplot, save, write_csv
from workloads import build

NAME = "step-caching"
TITLE = "Step caching: speed-up against the share of calls computed, with and without sequence parallelism"
MODELS = {"flux1-dev": "FLUX", "wan2.1-t2v-14b": "Wan"}  # workload -> the preset model names it matches
SHARES = (1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2)
PLAN = "transformer:ulysses=4"
COLUMNS = ("workload", "schedule", "computed_share", "gpus", "transformer_s", "request_s", "transformer_speedup",
           "request_speedup", "cache_MB", "reported_speedup")


def schedules(workload: str) -> list[str]:
    """The presets published for the workload's model, then the sweep of shares."""
    presets = [n for n, p in PRESETS.items() if p.model.startswith(MODELS[workload])]
    return presets + [f"share={s:g}" for s in SHARES]


def rows_for(workload: str, device: str) -> list[dict]:
    cost = model(device, "default")
    base = build(workload)
    plan = parse_plan(PLAN, tuple(s.name for s in base.stages))
    mode = base.params.get("guidance_mode")
    rest = sum(scheduled_stage_time(s, cost)[1].seconds for s in base.stages if s.name != "transformer")
    plain = {1: scheduled_stage_time(base.stage("transformer"), cost)[1].seconds,
             4: summary(base, plan, cost)["stages"][0]["per_rank_s"]}
    rows = []
    for name in schedules(workload):
        p = build(workload, cache=name)
        stage = p.stage("transformer")
        computed = stage.schedule.shares().get("full", 0.0)
        preset = PRESETS.get(name)
        for gpus, s in ((1, stage), (4, rank_stage(stage, plan.for_stage("transformer"), mode))):
            t = scheduled_stage_time(s, cost)[1].seconds
            rows.append({"workload": workload, "schedule": name, "computed_share": computed, "gpus": gpus,
                         "transformer_s": t, "request_s": rest + t, "transformer_speedup": plain[gpus] / t,
                         "request_speedup": (rest + plain[gpus]) / (rest + t),
                         "cache_MB": s.cache_bytes() / 1e6,
                         "reported_speedup": preset.reported_speedup if preset else None})
    return rows


def composition(rows: list[dict]) -> list[float]:
    """Per schedule: the transformer's speed-up from caching on 4 ranks over that on one GPU."""
    one = {(r["workload"], r["schedule"]): r["transformer_speedup"] for r in rows if r["gpus"] == 1}
    return [r["transformer_speedup"] / one[(r["workload"], r["schedule"])] for r in rows if r["gpus"] == 4]


def finding(rows: list[dict]) -> str:
    half = {r["workload"]: r["transformer_speedup"] for r in rows if r["schedule"] == "share=0.5" and r["gpus"] == 1}
    ratio = composition(rows)
    return (f"Computing half the calls speeds the transformer up {', '.join(f'{w} {x:.2f}x' for w, x in half.items())} "
            f"(the reuse ops cost the rest of 2x); under {PLAN} caching keeps {min(ratio):.1%}-{max(ratio):.1%} of "
            f"its one-GPU speed-up, so it composes with sequence parallelism almost multiplicatively.")


def plot(rows: list[dict], device: str, out: Path) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(MODELS), figsize=(12, 4.5))
    for ax, workload in zip(axes, MODELS):
        for gpus, marker in ((1, "o"), (4, "s")):
            sweep = [r for r in rows if r["workload"] == workload and r["gpus"] == gpus
                     and r["schedule"].startswith("share=")]
            ax.plot([r["computed_share"] for r in sweep], [r["transformer_speedup"] for r in sweep], marker=marker,
                    label=f"share sweep, {gpus} GPU" + ("s (ulysses)" if gpus > 1 else ""))
            for r in rows:
                if r["workload"] == workload and r["gpus"] == gpus and not r["schedule"].startswith("share="):
                    ax.scatter(r["computed_share"], r["transformer_speedup"], marker="*", s=90)
                    if gpus == 1:
                        ax.annotate(r["schedule"], (r["computed_share"], r["transformer_speedup"]), fontsize=6)
        ax.plot(SHARES, [1 / s for s in SHARES], ls=":", color="grey", label="1 / share (free reuse)")
        ax.set(xlabel="share of transformer calls computed in full", ylabel="transformer speed-up", title=workload)
        ax.legend(fontsize=7)
    fig.suptitle(f"Step caching on {device}: emulated work only, image/video quality not modelled")
    fig.tight_layout()
    return save(fig, out / f"{NAME}.png")


def run(device: str, out: Path) -> Result:
    rows = [r for w in MODELS for r in rows_for(w, device)]
    formats = {"computed_share": "{:.2f}", "transformer_s": "{:.3g}", "request_s": "{:.3g}",
               "transformer_speedup": "{:.2f}", "request_speedup": "{:.2f}", "cache_MB": "{:.0f}",
               "reported_speedup": "{:.2f}"}
    return Result(NAME, TITLE, finding(rows), [write_csv(out / f"{NAME}.csv", COLUMNS, rows)],
                  [plot(rows, device, out)], markdown_table(COLUMNS, rows, formats))
