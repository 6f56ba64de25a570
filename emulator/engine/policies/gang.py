"""gang and gang-adaptive: requests run planned stages on gangs of GPUs, one request per gang.

A gang policy serves a whole device group (`emulator.engine.gangs.GangScheduler`
runs it): a request waits in the group's queue in order of arrival, then holds
a gang of devices for all its stages in the group, its planned stages on the
plan's ranks and the others on the gang's first device. The policy's one
decision is the plan of each stage, `choose`:

- `gang`: the scenario's plan (`parallel:` of the traffic class or group).
- `gang-adaptive`: the plan of the class's loop stage (the denoiser) per
  request, from its size and the queue: the largest of `degrees` that leaves
  each GPU at least `tokens_per_gpu` tokens of the stage's longest sequence x
  batch (both guidance passes counted), and at most the group's devices / (1 + requests waiting behind it):
  wide when idle, narrow under load. A degree becomes a plan by `plan_for`:
  CFG first where guidance allows, then Ulysses as wide as the heads divide
  within a node, ring attention for the rest (or tensor parallel, with
  `split: tensor`); a degree no plan fits is skipped.

`backfill` lets a later request start on free devices when it ends before the
oldest waiting request could start anyway (EASY backfilling, `backfill_depth`
requests looked at), so the oldest is never delayed by those behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from emulator.errors import UserError
from emulator.parallel.plan import GUIDED_MODES, ParallelPlan, check, heads_gcd
from emulator.parallel.stage import guided_every_step


class GangPolicy:
    @dataclass(frozen=True)
    class Params:
        backfill: bool = True
        backfill_depth: int = field(default=16, metadata={"min": 1})  # waiting requests a backfill looks at

    def __init__(self, params):
        self.params = params

    def adapts(self, stage, cls) -> bool:
        """Whether `choose` picks this stage's plan per request (else the scenario's plan runs)."""
        return False

    def choose(self, options: dict[int, ParallelPlan], tokens: int, waiting: int, devices: int) -> ParallelPlan:
        """The plan of an adapted stage: `options` by degree, the stage's tokens x batch, requests waiting
        behind this one, the group's devices."""
        raise NotImplementedError


class Gang(GangPolicy):
    """The scenario's plans, as given."""


class AdaptiveGang(GangPolicy):
    @dataclass(frozen=True)
    class Params:
        degrees: tuple[int, ...] = field(default=(1, 2, 4, 8), metadata={"min": 1})  # gang sizes to pick from
        tokens_per_gpu: int = field(default=4096, metadata={"min": 1})  # least sequence x batch per GPU
        split: Literal["sequence", "tensor"] = "sequence"  # how a degree beyond CFG splits the stage
        backfill: bool = True
        backfill_depth: int = field(default=16, metadata={"min": 1})

        def problem(self) -> str | None:
            if not self.degrees or any(b <= a for a, b in zip(self.degrees, self.degrees[1:])):
                return f"degrees must be a non-empty increasing list, got {list(self.degrees)}"
            return None

    def adapts(self, stage, cls) -> bool:
        return stage is cls.loop_stage

    def choose(self, options, tokens, waiting, devices):
        by_size = [p for p in options if tokens / p >= self.params.tokens_per_gpu] or [min(options)]
        by_load = max(1, devices // (1 + waiting))
        fitting = [p for p in by_size if p <= by_load] or [min(options)]
        return options[max(fitting)]


def plan_for(stage, degree: int, guidance_mode: str | None, split: str, per_node: int,
             steps: int | None = None) -> ParallelPlan | None:
    """A plan of `degree` GPUs for a stage (see the module docstring), or None if none fits its graph. CFG
    parallel only where the stage's schedule runs guidance on every step (`steps`: the pipeline's)."""
    if degree == 1:
        return ParallelPlan()
    graph = stage.graph()
    guided = guidance_mode in GUIDED_MODES and guided_every_step(stage.schedule, guidance_mode, steps)
    cfg = 2 if guided and degree % 2 == 0 else 1
    rest = degree // cfg
    if split == "tensor":
        tries = [ParallelPlan(cfg=cfg, tensor=rest)]
    else:
        heads = heads_gcd(graph)
        wide = [u for u in range(min(rest, per_node), 0, -1) if rest % u == 0 and heads and heads % u == 0]
        tries = [ParallelPlan(cfg=cfg, ulysses=u, ring=rest // u) for u in wide]
    for plan in tries:
        try:
            check(stage.name, graph, plan, guidance_mode, stage.batch, stage.calls)
            return plan
        except UserError:
            continue
    return None
