"""Measuring on a CPU: a steady allocator, drift-corrected samples, passes restated, sentinel-timed models.

A CPU runs each kernel on the dispatching thread, so kernel times include the
host's work and the host model keeps only the bare dispatch. Convolutions are
fitted in the per-image feature sets, since CPU libraries loop over images and
PyTorch runs small images through its own path (emulator/cost/predictor.py).
"""

from __future__ import annotations

from calibration.cpu.allocator import REUSE, page_faults
from calibration.cpu.allocator import apply as apply_allocator
from calibration.cpu.drift import DriftCorrectedCpuClock, DriftReference, at_speeds, typical_speeds
from calibration.host import dispatch_seconds
from calibration.setup import Limits
from calibration.timers import CpuClock
from emulator.cost.predictor import DEFAULT_FEATURES

FEATURES = {"conv2d": "conv-per-image", "conv1d": "conv-per-image", "conv3d": "conv3d-per-frame",
            "linear": "linear-fused-bias"}  # oneDNN adds a bias inside the GEMM at no cost of its own


class CpuSetup:
    device = "cpu"
    limits = Limits(max_set_bytes=1 << 30, max_kernel_s=0.25, budget_s=1.5, tolerance=0.01, fill_bytes_per_s=1e9)
    timer = "perf_counter, drift-corrected"
    noise = ("samples rescaled by drift reference kernels; passes restated to the run's typical speed; "
             "entries pooled with their neighbours by inverse variance")
    host_times_included = True
    validation_dtype = "fp32"

    def prepare(self, allocator: str | None) -> dict:
        """Keep freed memory for reuse (or not) before anything is allocated; the state is recorded."""
        return {"allocator": apply_allocator(allocator or REUSE)}

    def host_times(self) -> dict:
        dispatch = dispatch_seconds("cpu")
        return {"s_per_kernel": dispatch, "s_per_op": dispatch}

    def kernel_clock(self, catalog) -> DriftCorrectedCpuClock:
        return DriftCorrectedCpuClock(DriftReference(), catalog=catalog)

    def features(self, kind: str) -> str:
        return FEATURES.get(kind, DEFAULT_FEATURES[kind])

    def restatement(self, entries: list[dict]):
        """Each entry taken from its clock's baselines to the references' median speeds over the run."""
        speeds = typical_speeds(entries)
        return lambda entry: at_speeds(entry, speeds)

    def model_timer(self, cost, graph):
        """Calls taken to the profile's speed by its sentinel kernels (a calibrated profile), else plain."""
        from calibration.cpu.sentinels import SentinelTimer, choose
        from emulator.cost import Profile

        if not isinstance(cost, Profile):
            return PlainTimer()
        return SentinelTimer(choose(graph, cost), cost)

    def call_counters(self, fn) -> dict:
        """Fresh memory one call faulted in: a timing that paid for pages the profile's kernels did not."""
        return {"page_faults_per_call": page_faults(fn)}

    def isolated_clock(self, level):
        """As the calibration timed kernels (references read around each batch), not rescaled: the
        sentinel level takes them to the profile's speed."""
        if level is None:
            return CpuClock()
        return DriftCorrectedCpuClock(DriftReference(), baseline_s=1.0, stream_baseline_s=1.0, rescale=False)

    def release(self) -> None:
        pass


class PlainTimer:
    """Median of 10 calls after 3 warm-ups (a roofline has no kernels to read the machine's speed by)."""

    level = None

    def time(self, fn) -> dict:
        from calibration.timers import time_call

        return {"measured_s": time_call(fn, "cpu")}
