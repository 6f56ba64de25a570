"""Measuring on a CUDA GPU: CUDA events around each sample, a clock that holds steady, host times measured."""

from __future__ import annotations

import sys

from calibration.host import dispatch_seconds, framework_seconds_per_op
from calibration.setup import Limits
from calibration.timers import CudaClock, time_call
from emulator.cost.predictor import DEFAULT_FEATURES


class CudaSetup:
    device = "cuda"
    limits = Limits(max_set_bytes=6 << 30, max_kernel_s=0.25, budget_s=0.4, tolerance=0.02, fill_bytes_per_s=100e9)
    timer = "CUDA events"
    noise = "median of samples until stable, slow outliers re-measured; pooled with neighbours if several passes"
    host_times_included = False
    validation_dtype = "fp16"

    def __init__(self):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but torch sees no CUDA device")
        self.torch = torch

    def prepare(self, allocator: str | None) -> dict:
        return {}  # the caching allocator keeps freed memory already

    def host_times(self) -> dict:
        """Bare dispatch per kernel, and per graph op of real model code where diffusers/transformers run."""
        host = {"s_per_kernel": dispatch_seconds("cuda")}
        try:
            framework = framework_seconds_per_op("cuda")
        except Exception as e:  # noqa: BLE001 (a reference library too old or too new: keep the bare dispatch)
            print(f"host time per op from real models failed ({type(e).__name__}: {e})", file=sys.stderr)
            framework = None
        if not framework:
            print("host time per op = bare dispatch (no diffusers/transformers models ran)", file=sys.stderr)
            return {**host, "s_per_op": host["s_per_kernel"]}
        return {**host, "s_per_op": framework["s_per_op"], "s_per_op_by_model": framework["by_model"]}

    def kernel_clock(self, catalog) -> CudaClock:
        return CudaClock()

    def features(self, kind: str) -> str:
        return DEFAULT_FEATURES[kind]

    def restatement(self, entries: list[dict]):
        return lambda entry: 1.0

    def model_timer(self, cost, graph) -> "EventTimer":
        return EventTimer()

    def call_counters(self, fn) -> dict:
        return {}

    def isolated_clock(self, level) -> CudaClock:
        return CudaClock()

    def release(self) -> None:
        self.torch.cuda.empty_cache()


class EventTimer:
    """Median of 10 calls after 3 warm-ups, each between CUDA events."""

    level = None  # a GPU's clock holds steady: nothing to take the time to the profile's speed

    def time(self, fn) -> dict:
        return {"measured_s": time_call(fn, "cuda")}
