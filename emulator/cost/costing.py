"""Seconds per stage call and per request, and the choice of cost model by name.

Scenario files and the command line name a cost model by a string, so one
function resolves it: `cost_model("a100-sxm4-80gb")` is the shipped calibrated
profile of a catalog device (or its roofline when none is shipped or
`roofline=True`); `cost_model("path/to/profile.json")` loads that profile.
`stage_time` costs a stage's first call and its whole request (every call,
decode steps with their longer KV caches) on the host/device timeline.
"""

from __future__ import annotations

from pathlib import Path

from emulator.cost.model import CostModel
from emulator.cost.profile import Profile, shipped_profile
from emulator.cost.roofline import Roofline
from emulator.cost.timeline import CallTime, GraphCoster, sum_calls
from emulator.devices import device
from emulator.pipeline import Stage


def cost_model(spec: str, attention: str = "flash", roofline: bool = False) -> CostModel:
    if spec.endswith(".json") or Path(spec).is_file():
        if roofline:
            return Roofline(Profile.from_file(spec, attention).device, attention)
        return Profile.from_file(spec, attention)
    dev = device(spec)
    profile = None if roofline else shipped_profile(spec)
    return Profile.from_file(profile, attention) if profile else Roofline(dev, attention)


def stage_time(stage: Stage, model: CostModel, batch: int | None = None) -> tuple[CallTime, CallTime]:
    """(first call, whole request) of a stage under a cost model."""
    coster = GraphCoster(stage.graph(batch), model, model.device.synchronous)
    first = coster.call()
    if stage.kv_growth and stage.calls > 1:
        request = sum_calls([first] + [coster.call(c * stage.kv_growth) for c in range(1, stage.calls)])
    else:
        request = sum_calls([first] * stage.calls)
    return first, request
