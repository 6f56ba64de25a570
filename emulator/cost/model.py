"""The cost-model protocol: what the timeline, the engine and the reports ask of any cost model.

Two classes implement it: `Roofline` (datasheet peaks; it has no calibrated
domain, so it covers no op) and `Profile` (calibrated kernel times, with a
roofline behind it for the ops outside its domain). Declaring the members once
lets every caller use them directly instead of probing a model for optional
ones.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from emulator.devices import Device
from emulator.ops import Op
from emulator.shapes import Attention


# Where an op's kernel time comes from, from most to least trusted: kernels measured on the device (its own
# calibration or public tables), another device's measurements scaled by a stated rule, a profile derived
# from published curves, a kind's fitted curve outside its measured domain, the datasheet roofline.
TIME_SOURCES = ("measured", "scaled", "derived", "curve", "datasheet")


@runtime_checkable
class CostModel(Protocol):
    name: str  # shown in reports: "roofline:<device>" or a profile's file name
    device: Device  # the datasheet: peaks, memory, whether host and device overlap
    attention: str  # 'default' or a name of emulator.attention.ATTENTION_IMPLEMENTATIONS, as asked for
    host_s_per_op: float  # host time to dispatch one graph op (model code included)
    host_s_per_kernel: float  # host time to dispatch each further kernel of an op
    calibrated: bool  # has a calibrated domain: ops outside it are counted as fallbacks

    def op_time(self, op: Op) -> float:
        """Device seconds of the op's kernels, run alone."""
        ...

    def implementation(self, a: Attention) -> str:
        """The attention implementation an attention shape is costed as ('default' resolved per shape class)."""
        ...

    def covers(self, op: Op) -> bool:
        """Whether the op lies inside the model's calibrated domain."""
        ...

    def time_source(self, op: Op) -> str:
        """Where the op's time comes from: one of TIME_SOURCES."""
        ...
