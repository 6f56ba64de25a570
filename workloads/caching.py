"""The `cache` and `cfg_steps` knobs: a denoising stage's per-call schedule, attached when a workload is built.

`cache` is a preset name (`emulator.cache_presets.PRESETS`), a method with
parameters (`share=0.5`: that share of steps computed in full, spread evenly,
the first always; `interval=3`: every third step; either with `,prefix=K` for
reused steps that compute the blocks of depth below K instead of skipping them
all), or an explicit list of step kinds (`list:full,skip,prefix-1,...`, one per
step). `cfg_steps` runs classifier-free guidance on the given step ranges only.
The schedule goes on the loop stage: the first stage with the most calls,
whose calls follow `steps` under the guidance mode.
"""

from __future__ import annotations

from dataclasses import replace

from emulator.cache_presets import PRESETS
from emulator.call_graphs import block_count
from emulator.errors import UserError, excerpt
from emulator.pipeline import Stage
from emulator.schedules import FULL, CallSchedule, expand, parse_kind, parse_ranges, spread
from workloads.config import WorkloadConfig

CACHED_TENSORS = {"residual": 1, "residual+indicator": 2}  # per-block: 2 per block
FORMS = "a preset (" + ", ".join(PRESETS) + "), share=S or interval=N (each optionally ,prefix=K), or list:KIND,..."


def guidance_mode(cfg: WorkloadConfig) -> str:
    """The config's guidance mode; a workload with the `guidance` switch runs it batched."""
    return cfg.guidance_mode or ("batched" if cfg.guidance else "off")


def loop_stage(name: str, cfg: WorkloadConfig, stages: tuple[Stage, ...], mode: str) -> Stage:
    loop = max((s for s in stages if not s.kv_growth), key=lambda s: s.calls)
    if loop.calls != cfg.steps * (2 if mode == "two-calls" else 1):
        raise UserError(f"{name}: its loop stage {loop.name} runs {loop.calls} calls, not one per step; "
                        f"cache and cfg_steps apply to denoisers run once per step")
    return loop


def generic(text: str, steps: int) -> tuple[list[bool], int]:
    """'share=S[,prefix=K]' or 'interval=N[,prefix=K]' -> (computed steps, reuse depth)."""
    params: dict[str, str] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        params[key.strip()] = value.strip()
    try:
        depth = int(params.pop("prefix", 0))
        if "share" in params and len(params) == 1 and 0 < float(params["share"]) <= 1:
            return spread(steps, round(float(params["share"]) * steps)), depth
        if "interval" in params and len(params) == 1 and int(params["interval"]) >= 1:
            return [i % int(params["interval"]) == 0 for i in range(steps)], depth
    except ValueError:
        pass
    raise UserError(f"cache {excerpt(text)} is not {FORMS}")


def step_plan(text: str, steps: int) -> tuple[list[int], str, int | str]:
    """(per-step depth, method text, cached tensors or 'per-block') of a cache knob value."""
    if text.startswith("list:"):
        depths = [parse_kind(w) for w in text[5:].split(",")]
        if len(depths) != steps:
            raise UserError(f"cache list has {len(depths)} entries; give one per step ({steps})")
        return depths, "list", 1
    preset = PRESETS.get(text)
    if preset is not None:
        computed = ([i % preset.interval == 0 for i in range(steps)] if preset.interval
                    else spread(steps, round(preset.share * steps)))
        cached = "per-block" if preset.cached == "per-block" else CACHED_TENSORS[preset.cached]
        return [FULL if c else preset.reuse_depth for c in computed], text, cached
    computed, depth = generic(text, steps)
    return [FULL if c else depth for c in computed], text, 1


def note(text: str | None) -> str:
    p = PRESETS.get(text or "")
    if p is None:
        return ""
    shown = f"{100 * p.share:.0f}% of steps computed ({p.share_from})" if p.share else f"every {p.interval} steps"
    speed = f", reported {p.reported_speedup:.2f}x" if p.reported_speedup else ""
    return f"{p.method} on {p.model}, {p.threshold}: {shown}{speed}; source: {p.source}"


def apply(name: str, cfg: WorkloadConfig, stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
    """The stages with the loop stage's schedule attached (unchanged when neither knob is given)."""
    if cfg.cache is None and cfg.cfg_steps is None:
        return stages
    mode = guidance_mode(cfg)
    if cfg.cfg_steps is not None and mode not in ("batched", "two-calls"):
        raise UserError(f"cfg_steps needs guidance run as batched or two-calls; {name} runs it {mode}")
    loop = loop_stage(name, cfg, stages, mode)
    steps = cfg.steps
    guided = [True] * steps if cfg.cfg_steps is None else parse_ranges(cfg.cfg_steps, steps)
    depths, method, cached = ([FULL] * steps, "no cache", 0) if cfg.cache is None else step_plan(str(cfg.cache), steps)
    blocks = block_count(loop.graph())
    reused = {d for d in depths if d != FULL}
    if reused and not blocks:
        raise UserError(f"cache: {name}'s {loop.name} has no block stack to reuse")
    if reused and max(reused) >= blocks:
        raise UserError(f"cache: prefix depth {max(reused)} is not below {name}'s {blocks} block depths")
    tensors = 2 * blocks if cached == "per-block" else cached
    if cfg.cfg_steps is not None:
        method += f", guidance on steps {cfg.cfg_steps}"
    schedule = CallSchedule(method, expand(depths, guided, mode), tensors if reused else 0,
                            2 if mode == "two-calls" else 1, note(cfg.cache))
    scheduled = replace(loop, calls=len(schedule.kinds), schedule=schedule)
    return tuple(scheduled if s is loop else s for s in stages)
