"""A plan applied to stages: the Stage one rank runs, and what it costs next to one GPU.

`rank_stage` validates a stage's plan against its graph and returns the stage
one rank runs: its graph `shard`ed at the rank's batch (CFG with batched
guidance halves the batch; CFG with guidance as two calls halves the calls:
each rank runs one of the pair). `stage_summary` costs both the stage on one
GPU and one rank's stage per request: the per-rank time (minus the ring's
send/recvs and PipeFusion's patch sends hidden under the attention they
overlap, plus PipeFusion's pipeline bubble), its communication time and
share, one rank's memory (`emulator.parallel.memory`) and the speedup.
"""

from __future__ import annotations

from emulator.attention import DEFAULT_ATTENTION
from emulator.cost import CostModel, stage_time
from emulator.cost.runtime import EAGER, Runtime
from emulator.parallel.memory import graph_memory
from emulator.parallel.pipefusion import bubble_s, pipefusion_rank
from emulator.parallel.plan import ParallelPlan, Plan, check
from emulator.parallel.transforms import cfg_gathered, overlaps, shard
from emulator.pipeline import Pipeline, Stage


def rank_stage(stage: Stage, plan: ParallelPlan, guidance_mode: str | None = None) -> Stage:
    """The stage one rank of `plan` runs (the stage itself for one GPU)."""
    if plan.degree == 1:
        return stage
    check(stage.name, stage.graph(), plan, guidance_mode, stage.batch, stage.calls)
    calls, batch = stage.calls, stage.batch
    if plan.cfg > 1 and guidance_mode == "batched":
        batch //= plan.cfg
    elif plan.cfg > 1:
        calls //= plan.cfg
    return Stage(stage.name, f"{stage.description}; one rank of {plan.text()}",
                 lambda n: shard(stage.build(n), plan), calls, batch, stage.kv_growth, stage.weights)


def rank_pipeline(pipeline: Pipeline, plan: Plan) -> Pipeline:
    """The pipeline with each planned stage replaced by one rank's stage."""
    mode = pipeline.params.get("guidance_mode")
    stages = tuple(rank_stage(s, plan.for_stage(s.name), mode) for s in pipeline.stages)
    return Pipeline(pipeline.workload, pipeline.params, stages)


def rank_memory(stage: Stage, plan: ParallelPlan, guidance_mode: str | None = None,
                attention: str = DEFAULT_ATTENTION) -> dict:
    """Bytes one rank of `plan` holds for `stage` (the single-device stage; one GPU's own for degree 1), at
    the rank's batch and its last call (the longest KV cache): `emulator.parallel.memory.graph_memory` of
    the rank's graph."""
    rank = rank_stage(stage, plan, guidance_mode)
    return graph_memory(rank.graph(call=rank.calls - 1), attention)


def overlap_s(stage: Stage, model: CostModel) -> float:
    """Seconds per request the overlapped communication hides: per (send/recv, block) pair the shorter one."""
    g = stage.graph()
    per_call = sum(min(model.op_time(g.op(c)), model.op_time(g.op(a))) for c, a in overlaps(g))
    return per_call * stage.calls


def warmup_step_s(single: Stage, rank: Stage, plan: ParallelPlan, model: CostModel, runtime: Runtime) -> float:
    """One PipeFusion stage's call on the whole sequence (one patch), as the warm-up runs it."""
    def build(batch: int):
        g = single.build(batch)
        return cfg_gathered(pipefusion_rank(g, plan.pipefusion, 1), g.ops[-1], plan)

    whole = Stage(single.name, "PipeFusion warm-up", build, 1, rank.batch)
    return stage_time(whole, model, runtime=runtime)[0].seconds - overlap_s(whole, model)


def stage_summary(single: Stage, rank: Stage, plan: ParallelPlan, model: CostModel,
                  runtime: Runtime = EAGER, warmup_calls: int = 1) -> dict:
    """One GPU against one rank of `plan`, per request of the stage; PipeFusion's first `warmup_calls`
    calls run unpipelined (`emulator.parallel.pipefusion.bubble_s`)."""
    _, one = stage_time(single, model, runtime=runtime)
    first, per_rank = stage_time(rank, model, runtime=runtime)
    hidden = overlap_s(rank, model)
    comm = per_rank.by_category_s.get("Communication", 0.0)
    bubble = 0.0
    if plan.pipefusion > 1:
        step = first.seconds - hidden / rank.calls
        bubble = bubble_s(step, warmup_step_s(single, rank, plan, model, runtime), plan.pipefusion,
                          plan.patch_count, warmup_calls)
    seconds = per_rank.seconds - hidden + bubble
    memory = graph_memory(rank.graph(call=rank.calls - 1))
    return {
        "stage": single.name,
        "plan": plan.text(),
        "gpus": plan.degree,
        "calls_per_rank": rank.calls,
        "batch_per_rank": rank.batch,
        "one_gpu_s": one.seconds,
        "per_rank_s": seconds,
        "per_rank_call_s": first.seconds - hidden / rank.calls,
        "communication_s": comm,
        "communication_hidden_s": hidden,
        "communication_share": max(0.0, comm - hidden) / seconds if seconds else 0.0,
        "pipeline_bubble_s": bubble,
        "host_idle_s": per_rank.host_idle_s,  # the rank's device waiting for the host's dispatch
        "attention_s": per_rank.by_category_s.get("Attention", 0.0),
        "one_gpu_attention_s": one.by_category_s.get("Attention", 0.0),
        "speedup": one.seconds / seconds if seconds else 0.0,
        "memory_per_rank": memory,
        "memory_one_gpu": graph_memory(single.graph(call=single.calls - 1)),
    }


def warmup_calls(pipeline: Pipeline, rank: Stage) -> int:
    """Calls of PipeFusion's one warm-up step: a rank's calls per denoising step (two with guidance as two
    calls on one rank), 1 where the pipeline states no steps."""
    steps = pipeline.params.get("steps")
    return max(1, rank.calls // steps) if steps else 1


def summary(pipeline: Pipeline, plan: Plan, model: CostModel, runtime: Runtime = EAGER) -> dict:
    """Per planned stage and per request: one GPU against the plan's ranks (unplanned stages on one GPU)."""
    ranks = rank_pipeline(pipeline, plan)
    stages = [stage_summary(s, r, plan.for_stage(s.name), model, runtime, warmup_calls(pipeline, r))
              for s, r in zip(pipeline.stages, ranks.stages) if plan.for_stage(s.name).degree > 1]
    planned = {s["stage"] for s in stages}
    rest = sum(stage_time(s, model, runtime=runtime)[1].seconds for s in pipeline.stages if s.name not in planned)
    one = rest + sum(s["one_gpu_s"] for s in stages)
    parallel = rest + sum(s["per_rank_s"] for s in stages)
    return {"plan": plan.text(), "gpus": max(s["gpus"] for s in stages), "stages": stages,
            "one_gpu_per_request_s": one, "per_request_s": parallel, "speedup": one / parallel if parallel else 0.0}


def summary_text(p: dict) -> list[str]:
    """Terminal lines for `summary`."""
    lines = [f"parallel plan {p['plan']} ({p['gpus']} GPUs): {p['per_request_s']:.4g} s per request against "
             f"{p['one_gpu_per_request_s']:.4g} s on one GPU, speedup {p['speedup']:.2f}x"]
    for s in p["stages"]:
        lines.append(f"  {s['stage']}: {s['plan']} on {s['gpus']} GPUs, {s['calls_per_rank']} call(s) per rank at "
                     f"batch {s['batch_per_rank']}: {s['per_rank_call_s'] * 1e3:.4g} ms per call, "
                     f"{s['per_rank_s']:.4g} s per request per rank (one GPU {s['one_gpu_s']:.4g} s), "
                     f"communication {100 * s['communication_share']:.1f}%"
                     + (f" ({s['communication_hidden_s']:.3g} s hidden under attention)"
                        if s["communication_hidden_s"] else "")
                     + (f", pipeline bubble {s['pipeline_bubble_s']:.3g} s" if s["pipeline_bubble_s"] else "")
                     + f", speedup {s['speedup']:.2f}x")
        lines.append("    " + memory_text(s["memory_per_rank"], s["memory_one_gpu"]))
    return lines


def memory_text(rank: dict, one: dict) -> str:
    """One line: a rank's weights, peak activations and K/V against one GPU's."""
    gib = 2 ** 30
    parts = [f"{what} {rank[key] / gib:.3g} GiB (one GPU {one[key] / gib:.3g})" for what, key in
             (("weights", "weight_bytes"), ("peak activations", "activation_peak_bytes"), ("K/V", "kv_bytes"))]
    return f"memory per rank: {', '.join(parts)}, total {rank['total_bytes'] / gib:.3g} GiB"
