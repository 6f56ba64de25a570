"""parallel-scaling: how multi-GPU DiT inference scales with GPUs, by parallel method.

HunyuanVideo (129 frames, 50 steps) and Wan 2.1 14B (81 frames, 50 steps)
at 480p and 720p, FLUX.1-dev (28 steps) at 1024 and 2048 pixels square, on
1, 2, 4 and 8 GPUs of one node. Methods (`emulator.parallel`): Ulysses,
ring attention, CFG (two GPUs; Wan only, the other two are
guidance-distilled), PipeFusion (one patch per stage), and the combinations
Ulysses x CFG, Ulysses x ring and PipeFusion x CFG (the second degree 2,
from 4 GPUs). A plan a model cannot take (ring degrees not dividing the
sequence, CFG on a distilled model) is left out and counted.

Per row: one rank's transformer seconds per request (its communication and,
for PipeFusion, the pipeline bubble included) against one GPU's, speedup
and efficiency (speedup / GPUs), the rank's communication and compute
seconds, and its memory (`emulator.parallel.rank_memory`). End to end: the
text encoders on one GPU, the transformer under the plan and the VAE
decoder split by rows over the same GPUs (`spatial`, where the latent
allows; else one GPU). Steps are the models' defaults: a stage is costed
per call and times its calls, so steps cost nothing to emulate, and
PipeFusion's warm-up is amortized over the real step count. GPU counts of
one row are one gpus value with every degree of the plan multiplied out;
rows at 1 GPU are the single-GPU times for every method.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from emulator.cost import CostModel, stage_time
from emulator.errors import UserError
from emulator.parallel import ParallelPlan, graph_memory
from emulator.parallel.stage import rank_stage, stage_summary, warmup_calls
from emulator.pipeline import Pipeline, Stage
from experiments.common import Result, markdown_table, model, pyplot, save, write_csv
from workloads import build

NAME = "parallel-scaling"
TITLE = "Multi-GPU DiTs: speedup and efficiency against GPUs by parallel method"
ATTENTION = "flash"
GPUS = (1, 2, 4, 8)
GIB = 2 ** 30
SETTINGS: tuple[tuple[str, str, dict], ...] = (
    ("hunyuanvideo", "480p", {"height": 480, "width": 848}),
    ("hunyuanvideo", "720p", {"height": 720, "width": 1280}),
    ("wan2.1-t2v-14b", "480p", {"height": 480, "width": 832}),
    ("wan2.1-t2v-14b", "720p", {"height": 720, "width": 1280}),
    ("flux1-dev", "1024", {"height": 1024, "width": 1024}),
    ("flux1-dev", "2048", {"height": 2048, "width": 2048}),
)


METHODS: dict[str, Callable[[int], ParallelPlan | None]] = {
    "ulysses": lambda n: ParallelPlan(ulysses=n),
    "ring": lambda n: ParallelPlan(ring=n),
    "cfg": lambda n: ParallelPlan(cfg=2) if n == 2 else None,
    "pipefusion": lambda n: ParallelPlan(pipefusion=n),
    "ulysses x cfg": lambda n: ParallelPlan(ulysses=n // 2, cfg=2) if n >= 4 else None,
    "ulysses x ring": lambda n: ParallelPlan(ulysses=n // 2, ring=2) if n >= 4 else None,
    "pipefusion x cfg": lambda n: ParallelPlan(pipefusion=n // 2, cfg=2) if n >= 4 else None,
}
COLUMNS = ("workload", "resolution", "method", "gpus", "plan", "transformer_s", "transformer_one_gpu_s", "speedup",
           "efficiency", "attention_speedup", "communication_s", "compute_s", "communication_share", "host_idle_s",
           "pipeline_bubble_s", "weights_per_rank_GiB", "activations_per_rank_GiB", "kv_per_rank_GiB", "vae_plan",
           "end_to_end_s", "end_to_end_one_gpu_s", "end_to_end_speedup")


def stage_s(stage: Stage, cost: CostModel) -> float:
    """One GPU's seconds for the stage per request."""
    return stage_time(stage, cost)[1].seconds


def vae_s(pipeline: Pipeline, gpus: int, cost: CostModel) -> tuple[str, float]:
    """The VAE decoder split by rows over `gpus` (one GPU where the latent does not allow it): plan, seconds."""
    vae = pipeline.stage("vae_decoder")
    if gpus > 1:
        plan = ParallelPlan(spatial=gpus)
        try:
            rank = rank_stage(vae, plan)
        except UserError:
            return "one GPU", stage_s(vae, cost)
        return plan.text(), stage_summary(vae, rank, plan, cost)["per_rank_s"]
    return "one GPU", stage_s(vae, cost)


def setting_rows(workload: str, resolution: str, knobs: dict, cost: CostModel) -> tuple[list[dict], int]:
    """Rows of one model at one resolution; and how many plans it could not take."""
    p = build(workload, **knobs)
    transformer = p.stage("transformer")
    mode = p.params.get("guidance_mode")
    text = sum(stage_s(s, cost) for s in p.stages if s.name.startswith("text_encoder"))
    one_time = stage_time(transformer, cost)[1]
    one = one_time.seconds
    one_memory = graph_memory(transformer.graph())
    base = {"workload": workload, "resolution": resolution, "transformer_one_gpu_s": one,
            "end_to_end_one_gpu_s": text + one + vae_s(p, 1, cost)[1]}
    rows, refused = [], 0
    for method, plan_of in METHODS.items():
        for gpus in GPUS:
            if gpus == 1:
                rows.append(base | single_row(method, one, one_time.host_idle_s, one_memory,
                                              base["end_to_end_one_gpu_s"]))
                continue
            plan = plan_of(gpus)
            if plan is None:
                continue
            try:
                rank = rank_stage(transformer, plan, mode)
            except UserError:
                refused += 1
                continue
            s = stage_summary(transformer, rank, plan, cost, warmup_calls=warmup_calls(p, rank))
            vae_plan, vae = vae_s(p, gpus, cost)
            row = parallel_row(method, gpus, s, vae_plan, text + s["per_rank_s"] + vae)
            rows.append(base | row | {"end_to_end_speedup": base["end_to_end_one_gpu_s"] / row["end_to_end_s"]})
    return rows, refused


def single_row(method: str, one: float, host_idle: float, memory: dict, end_to_end: float) -> dict:
    return {"method": method, "gpus": 1, "plan": "one GPU", "transformer_s": one, "speedup": 1.0, "efficiency": 1.0,
            "attention_speedup": 1.0, "communication_s": 0.0, "compute_s": one, "communication_share": 0.0,
            "host_idle_s": host_idle, "pipeline_bubble_s": 0.0,
            "weights_per_rank_GiB": memory["weight_bytes"] / GIB,
            "activations_per_rank_GiB": memory["activation_peak_bytes"] / GIB,
            "kv_per_rank_GiB": memory["kv_bytes"] / GIB, "vae_plan": "one GPU", "end_to_end_s": end_to_end,
            "end_to_end_speedup": 1.0}


def parallel_row(method: str, gpus: int, s: dict, vae_plan: str, end_to_end: float) -> dict:
    exposed = max(0.0, s["communication_s"] - s["communication_hidden_s"])
    memory = s["memory_per_rank"]
    return {"method": method, "gpus": gpus, "plan": s["plan"], "transformer_s": s["per_rank_s"],
            "speedup": s["speedup"], "efficiency": s["speedup"] / gpus,
            "attention_speedup": s["one_gpu_attention_s"] / s["attention_s"] if s["attention_s"] else None,
            "communication_s": exposed, "compute_s": s["per_rank_s"] - exposed - s["pipeline_bubble_s"],
            "communication_share": s["communication_share"], "host_idle_s": s["host_idle_s"],
            "pipeline_bubble_s": s["pipeline_bubble_s"],
            "weights_per_rank_GiB": memory["weight_bytes"] / GIB,
            "activations_per_rank_GiB": memory["activation_peak_bytes"] / GIB,
            "kv_per_rank_GiB": memory["kv_bytes"] / GIB, "vae_plan": vae_plan, "end_to_end_s": end_to_end}


def best(rows: list[dict]) -> list[dict]:
    """Per setting and GPU count, the row with the shortest end-to-end time."""
    out: dict[tuple, dict] = {}
    for r in rows:
        key = (r["workload"], r["resolution"], r["gpus"])
        if key not in out or r["end_to_end_s"] < out[key]["end_to_end_s"]:
            out[key] = r
    return list(out.values())


def plot(rows: list[dict], column: str, ylabel: str, device: str, path: Path, ideal: bool) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), sharex=True)
    lines = {}
    for ax, (workload, resolution, _) in zip(axes.T.flat, SETTINGS):
        for k, method in enumerate(METHODS):
            pts = sorted((r["gpus"], r[column]) for r in rows if r["workload"] == workload
                         and r["resolution"] == resolution and r["method"] == method)
            if len(pts) > 1:
                lines[method], = ax.plot(*zip(*pts), marker="o", ms=3, color=plt.get_cmap("tab10")(k))
        if ideal:
            lines["linear"], = ax.plot(GPUS, GPUS, color="grey", ls=":")
        ax.set(title=f"{workload} {resolution}", xscale="log", ylabel=ylabel)
        ax.set_xticks(GPUS, [str(g) for g in GPUS])
        ax.set_xticks([], minor=True)
    for ax in axes[-1]:
        ax.set_xlabel("GPUs")
    fig.legend(lines.values(), lines.keys(), loc="lower center", ncol=len(lines), fontsize=8)
    fig.suptitle(f"{ylabel} of the transformer per request on {device} (flash attention)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save(fig, path)


def finding(rows: list[dict], refused: int) -> str:
    top = [r for r in best(rows) if r["gpus"] == max(GPUS)]
    best_text = "; ".join(f"{r['workload']} {r['resolution']} {r['plan']} {r['end_to_end_speedup']:.2f}x "
                          f"end to end ({r['speedup']:.2f}x transformer)" for r in top)
    over = [r for r in rows if r["communication_s"] > r["compute_s"]]
    worst = max(rows, key=lambda r: r["communication_share"])
    if over:
        first = min(over, key=lambda r: r["gpus"])
        comm = (f"communication overtakes compute in {len(over)} rows, first at {first['gpus']} GPUs "
                f"({first['workload']} {first['resolution']} {first['plan']})")
    else:
        comm = (f"communication never overtakes compute up to {max(GPUS)} GPUs of one node (largest exposed share "
                f"{worst['communication_share']:.1%}, {worst['workload']} {worst['resolution']} {worst['plan']})")
    superlinear = [r for r in rows if r["efficiency"] > 1.02]
    faster = [r for r in superlinear if (r["attention_speedup"] or 0) > r["gpus"]]
    host = max(rows, key=lambda r: r["host_idle_s"] / r["transformer_s"])
    return (f"Best plan on {max(GPUS)} GPUs: {best_text}. {comm[0].upper()}{comm[1:]}. {len(superlinear)} rows "
            f"scale beyond linear, {len(faster)} of them where a rank's attention kernels take less than 1/GPUs of "
            f"one GPU's attention time (smaller shapes the profile costs at a higher throughput). The most host-bound "
            f"rank waits {host['host_idle_s'] / host['transformer_s']:.0%} of its time for the host's dispatch "
            f"({host['workload']} {host['resolution']} {host['plan']}). {refused} plans a model cannot take were "
            f"left out.")


def run(device: str, out: Path) -> Result:
    cost = model(device, ATTENTION)
    rows, refused = [], 0
    for i, (workload, resolution, knobs) in enumerate(SETTINGS):
        print(f"  {NAME}: {workload} {resolution} ({i + 1}/{len(SETTINGS)})", file=sys.stderr, flush=True)
        r, n = setting_rows(workload, resolution, knobs, cost)
        rows += r
        refused += n
    csv = write_csv(out / f"{NAME}.csv", COLUMNS, rows)
    pngs = [plot(rows, "speedup", "speedup", device, out / f"{NAME}.png", True),
            plot(rows, "communication_share", "communication share", device, out / f"{NAME}-communication.png",
                 False)]
    shown = ("workload", "resolution", "gpus", "plan", "vae_plan", "end_to_end_s", "end_to_end_speedup",
             "transformer_s", "communication_share", "weights_per_rank_GiB")
    formats = {"end_to_end_s": "{:.4g}", "end_to_end_speedup": "{:.2f}", "transformer_s": "{:.4g}",
               "communication_share": "{:.1%}", "weights_per_rank_GiB": "{:.3g}"}
    return Result(NAME, TITLE, finding(rows, refused), [csv], pngs, markdown_table(shown, best(rows), formats))
