"""What measuring needs from a device, declared once: limits, a kernel clock, host times, a model timer.

`calibration run` and `calibration validate` hold no device-kind branches:
they ask the device's setup (calibration/setups.py) for what differs. A GPU's
(calibration/gpu.py) times with CUDA events and its clock holds steady; a
shared CPU's (calibration/cpu/) puts the allocator in a steady state, rescales
samples by drift reference kernels, restates passes to the run's typical speed
and takes a model's time to the profile's speed by sentinel kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Protocol


@dataclass(frozen=True)
class Limits:
    """What a kernel may cost to measure on a device."""

    max_set_bytes: int  # one input set, weights and outputs
    max_kernel_s: float  # estimated seconds of one run
    budget_s: float  # seconds to time one kernel
    tolerance: float  # successive medians agree within this share: stop timing
    fill_bytes_per_s: float  # filling input buffers with random values, for the time estimate

    def adjusted(self, quick: bool, max_kernel_s: float | None) -> "Limits":
        limits = replace(self, max_kernel_s=max_kernel_s) if max_kernel_s is not None else self
        return replace(limits, budget_s=min(limits.budget_s, 0.3)) if quick else limits


class KernelClock(Protocol):
    """Times samples of one kernel; `start` is called before each kernel, `readings` after it."""

    name: str

    def start(self, kind: str, shape, dtype: str) -> None: ...

    def samples(self, run: Callable[[int], object], first: int, n: int) -> list[float]: ...

    def readings(self) -> dict: ...


class ModelTimer(Protocol):
    """Times a whole model call for validation: {"measured_s": ..., and how it was taken}."""

    level: object  # reads the machine's speed against the profile's (CPU sentinels), or None

    def time(self, fn: Callable[[], object]) -> dict: ...


class Setup(Protocol):
    device: str  # torch device type: "cuda" or "cpu"
    limits: Limits
    timer: str  # how samples are timed, for the profile's provenance
    noise: str  # how noise is handled, for the profile's provenance
    host_times_included: bool  # kernel times include the host's work (a CPU runs kernels on its thread)
    validation_dtype: str  # the precision real models are validated in

    def prepare(self, allocator: str | None) -> dict: ...  # process state; what to record of it

    def host_times(self) -> dict: ...  # s_per_kernel and s_per_op

    def kernel_clock(self, catalog) -> KernelClock: ...

    def features(self, kind: str) -> str: ...  # the shape-feature set a kind is fitted in

    def restatement(self, entries: list[dict]) -> Callable[[dict], float]: ...  # factor per logged entry

    def model_timer(self, cost, graph) -> ModelTimer: ...

    def call_counters(self, fn) -> dict: ...  # extra readings of one model call for its validation row

    def isolated_clock(self, level) -> KernelClock: ...  # kernels of a model timed alone

    def release(self) -> None: ...  # after each kernel: give memory back
