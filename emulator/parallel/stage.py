"""A plan applied to stages: the Stage one rank runs, and what it costs next to one GPU.

`rank_stage` validates a stage's plan against its graph and returns the stage
one rank runs: its graph `shard`ed at the rank's batch (CFG with batched
guidance halves the batch; CFG with guidance as two calls halves the calls:
each rank runs one of the pair), carrying the rank's share of the stage's
per-call schedule (step caching: `rank_schedule`). `stage_summary` costs both
the stage on one GPU and one rank's stage per request, each call by its kind
(`emulator.schedule_cost`): the per-rank time (minus the ring's
send/recvs and PipeFusion's patch sends hidden under the attention they
overlap, plus PipeFusion's pipeline bubble: `pipeline_bubble_s`, which the
gang engine adds too), its communication time and
share, one rank's memory (`emulator.parallel.memory`) and the speedup.
"""

from __future__ import annotations

from dataclasses import replace

from emulator.attention import DEFAULT_ATTENTION
from emulator.cost import CostModel, stage_time
from emulator.cost.runtime import EAGER, Runtime
from emulator.errors import UserError
from emulator.graph import OpGraph
from emulator.parallel.memory import graph_memory
from emulator.parallel.pipefusion import bubble_s, pipefusion_rank
from emulator.parallel.plan import GUIDED_MODES, ParallelPlan, Plan, check
from emulator.parallel.transforms import cfg_gathered, overlaps, shard
from emulator.pipeline import Pipeline, Stage
from emulator.schedule_cost import scheduled_stage_time
from emulator.schedules import FULL, CallSchedule


def rank_stage(stage: Stage, plan: ParallelPlan, guidance_mode: str | None = None,
               steps: int | None = None) -> Stage:
    """The stage one rank of `plan` runs (the stage itself for one GPU), with the rank's share of the stage's
    per-call schedule (`rank_schedule`; `steps`: the pipeline's denoising steps, where known)."""
    if plan.degree == 1:
        return stage
    schedule = rank_schedule(stage, plan, guidance_mode, steps)
    check(stage.name, stage.graph(), plan, guidance_mode, stage.batch, stage.calls)
    calls, batch = stage.calls, stage.batch
    if plan.cfg > 1 and guidance_mode == "batched":
        batch //= plan.cfg
    elif plan.cfg > 1:
        calls //= plan.cfg
    return Stage(stage.name, f"{stage.description}; one rank of {plan.text()}",
                 lambda n: shard(stage.build(n), plan), calls, batch, stage.kv_growth, stage.weights,
                 schedule=schedule)


def rank_schedule(stage: Stage, plan: ParallelPlan, guidance_mode: str | None,
                  steps: int | None = None) -> CallSchedule | None:
    """The kinds of one rank's calls: the stage's own where every rank runs every call (Ulysses, ring, tensor,
    PipeFusion, CFG with batched guidance); under CFG with guidance as two calls each rank runs one call of
    every step's pair, so the rank's calls are the steps' kinds. Refused in one line where a rank's calls are
    not the stage's: CFG with guidance on part of the steps (the unguided steps' single call runs on one rank
    only), and PipeFusion with a cache that computes part of the blocks (each rank holds other blocks).
    The partial-call graphs follow from the rank graph (`Stage.call_graph`): block scopes survive the
    transforms, and a reused residual is the rank's shard of it."""
    s = stage.schedule
    if s is None:
        return None
    if plan.pipefusion > 1 and any(0 < k.depth < FULL for k in s.kinds):
        raise UserError(f"{stage.name}: pipefusion={plan.pipefusion} with a cache that computes part of the blocks "
                        f"({s.method}) is not modelled (each rank holds other blocks); use a cache that reuses "
                        f"whole steps (a TeaCache preset, share=S, interval=N)")
    if plan.cfg == 1 or guidance_mode not in GUIDED_MODES:  # without guidance passes `check` refuses cfg
        return s
    if not guided_every_step(s, guidance_mode, steps):
        raise UserError(f"{stage.name}: cfg={plan.cfg} runs the two guidance passes on two GPUs and needs guidance "
                        f"on every step; this schedule ({s.method}) leaves steps unguided: drop cfg_steps or the "
                        f"cfg degree")
    if guidance_mode == "batched":
        return s
    return replace(s, kinds=s.kinds[0::2], branches=1)


def guided_every_step(schedule: CallSchedule | None, guidance_mode: str | None, steps: int | None = None) -> bool:
    """Whether a schedule runs guidance on every step (no schedule: yes): no half-batch call under batched
    guidance; under two calls, pairs of equal calls (two per step when the `steps` are known)."""
    if schedule is None:
        return True
    kinds = schedule.kinds
    if guidance_mode == "batched":
        return not any(k.half for k in kinds)
    return not len(kinds) % 2 and kinds[0::2] == kinds[1::2] and (steps is None or len(kinds) == 2 * steps)


def rank_pipeline(pipeline: Pipeline, plan: Plan) -> Pipeline:
    """The pipeline with each planned stage replaced by one rank's stage."""
    mode = pipeline.params.get("guidance_mode")
    steps = pipeline.params.get("steps")
    stages = tuple(rank_stage(s, plan.for_stage(s.name), mode, steps) for s in pipeline.stages)
    return Pipeline(pipeline.workload, pipeline.params, stages)


def rank_memory(stage: Stage, plan: ParallelPlan, guidance_mode: str | None = None,
                attention: str = DEFAULT_ATTENTION) -> dict:
    """Bytes one rank of `plan` holds for `stage` (the single-device stage; one GPU's own for degree 1), at
    the rank's batch and its last call (the longest KV cache): `emulator.parallel.memory.graph_memory` of
    the rank's graph."""
    rank = rank_stage(stage, plan, guidance_mode)
    return graph_memory(rank.graph(call=rank.calls - 1), attention)


def overlap_call_s(graph: OpGraph, model: CostModel) -> float:
    """Seconds one call of `graph` hides: per (send/recv, block) pair the shorter one."""
    return sum(min(model.op_time(graph.op(c)), model.op_time(graph.op(a))) for c, a in overlaps(graph))


def overlap_s(stage: Stage, model: CostModel) -> float:
    """Seconds per request the overlapped communication hides, each kind of call by its own graph."""
    return sum(overlap_call_s(stage.call_graph(k), model) * n for k, n in stage.kind_counts().items())


def warmup_step_s(single: Stage, rank: Stage, plan: ParallelPlan, model: CostModel, runtime: Runtime) -> float:
    """One PipeFusion stage's call on the whole sequence (one patch), as the warm-up runs it."""
    def build(batch: int):
        g = single.build(batch)
        return cfg_gathered(pipefusion_rank(g, plan.pipefusion, 1), g.ops[-1], plan)

    whole = Stage(single.name, "PipeFusion warm-up", build, 1, rank.batch)
    return stage_time(whole, model, runtime=runtime)[0].seconds - overlap_s(whole, model)


def pipeline_fills(rank: Stage) -> int:
    """Times a PipeFusion rank's pipeline fills per request: once, and again at every computed call after
    reused ones (a reused call needs the whole previous output, so the pipeline drains before it)."""
    kinds = [rank.kind(c) for c in range(rank.calls)]
    return 1 + sum(1 for a, b in zip(kinds, kinds[1:]) if a.depth != FULL and b.depth == FULL)


def pipeline_bubble_s(single: Stage, rank: Stage, plan: ParallelPlan, model: CostModel, runtime: Runtime,
                      step_s: float, warmup_calls: int = 1) -> float:
    """PipeFusion's bubble per request (0 for other plans): its fills and warm-up
    (`emulator.parallel.pipefusion.bubble_s`), given one pipelined full call's seconds `step_s`."""
    if plan.pipefusion == 1:
        return 0.0
    return bubble_s(step_s, warmup_step_s(single, rank, plan, model, runtime), plan.pipefusion, plan.patch_count,
                    warmup_calls, pipeline_fills(rank))


def stage_summary(single: Stage, rank: Stage, plan: ParallelPlan, model: CostModel,
                  runtime: Runtime = EAGER, warmup_calls: int = 1) -> dict:
    """One GPU against one rank of `plan`, per request of the stage, each call costed by its kind;
    PipeFusion's first `warmup_calls` calls run unpipelined (`pipeline_bubble_s`)."""
    _, one = scheduled_stage_time(single, model, runtime=runtime)
    first, per_rank = scheduled_stage_time(rank, model, runtime=runtime)
    hidden = overlap_s(rank, model)
    comm = per_rank.by_category_s.get("Communication", 0.0)
    step = first.seconds - overlap_call_s(rank.graph(), model)  # one full call
    bubble = pipeline_bubble_s(single, rank, plan, model, runtime, step, warmup_calls)
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
        "per_rank_call_s": step,
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
    rest = sum(scheduled_stage_time(s, model, runtime=runtime)[1].seconds
               for s in pipeline.stages if s.name not in planned)
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
