"""Seconds of a scheduled stage per request: each kind of call costed once on the timeline, times its calls.

`stage_time` (emulator.cost.costing) costs every call like the first; a stage
with a per-call schedule (`emulator.schedules`) has calls of several kinds,
each its own graph (`Stage.call_graph`). The first call reported is a full one,
so per-call figures stay comparable with the unscheduled stage.
"""

from __future__ import annotations

from emulator.cost import CostModel, stage_time
from emulator.cost.runtime import EAGER, Runtime
from emulator.cost.timeline import CallTime, GraphCoster, sum_calls
from emulator.pipeline import Stage


def kind_times(stage: Stage, model: CostModel, batch: int | None = None, runtime: Runtime = EAGER) -> dict:
    """CallTime of one call of each kind the stage's schedule uses, at a per-call batch."""
    return {kind: GraphCoster(stage.call_graph(kind, batch), model, model.device.synchronous, runtime).call()
            for kind in stage.kind_counts()}


def scheduled_stage_time(stage: Stage, model: CostModel, batch: int | None = None,
                         runtime: Runtime = EAGER) -> tuple[CallTime, CallTime]:
    """(a full call, whole request) of a stage, each call costed by its kind."""
    if stage.schedule is None:
        return stage_time(stage, model, batch, runtime)
    times = kind_times(stage, model, batch, runtime)
    first = GraphCoster(stage.graph(batch), model, model.device.synchronous, runtime).call()
    return first, sum_calls([times[k] for k in stage.schedule.kinds])
