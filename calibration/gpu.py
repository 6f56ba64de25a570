"""Measuring on a CUDA GPU: kernels replayed back to back from CUDA graphs, host times measured apart.

Kernel times follow the project's convention: device execution time in a
back-to-back replay, launch excluded (`CudaGraphClock`, calibration/timers.py).
The host's launch cost is measured on its own (`host_times`: bare dispatch per
kernel, real model code per op) and goes in the profile's host section, which
the emulator's runtimes add (emulator/cost/runtime.py). One input set may take
up to SET_SHARE of the device's memory (baseline attention's similarity
matrices at long sequences). Whole models (validation) are timed with CUDA
events around the call, launches included.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from calibration.host import dispatch_seconds, framework_seconds_per_op
from calibration.setup import Limits
from calibration.timers import CudaGraphClock, time_call
from emulator.cost.predictor import DEFAULT_FEATURES

SET_SHARE = 0.75  # of the device's memory, for one input set with its weights, outputs and intermediates


def set_bytes_limit(memory_bytes: int) -> int:
    """The largest input set a device with this much memory measures."""
    return int(SET_SHARE * memory_bytes)


class CudaSetup:
    device = "cuda"
    limits = Limits(max_set_bytes=6 << 30, max_kernel_s=0.25, budget_s=0.4, tolerance=0.02, fill_bytes_per_s=100e9)
    timer = ("CUDA-graph replay: R launches of the kernel (rotating input sets) captured in one graph, each "
             "replay between CUDA events, divided by R; device time back to back, launch excluded")
    noise = "median of samples until stable, slow outliers re-measured; pooled with neighbours if several passes"
    host_times_included = False
    validation_dtype = "fp16"

    def __init__(self):
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("error: --device cuda but torch sees no CUDA device")
        self.torch = torch
        memory = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        self.limits = replace(CudaSetup.limits, max_set_bytes=set_bytes_limit(memory))
        self.clocks: list[CudaGraphClock] = []

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

    def kernel_clock(self, catalog) -> CudaGraphClock:
        return self.new_clock()

    def features(self, kind: str) -> str:
        return DEFAULT_FEATURES[kind]

    def restatement(self, entries: list[dict]):
        return lambda entry: 1.0

    def model_timer(self, cost, graph) -> "EventTimer":
        return EventTimer()

    def call_counters(self, fn) -> dict:
        return {}

    def isolated_clock(self, level) -> CudaGraphClock:
        return self.new_clock()  # kernels of a model alone, timed as the profile's were

    def new_clock(self) -> CudaGraphClock:
        clock = CudaGraphClock(self.torch)
        self.clocks.append(clock)
        return clock

    def release(self) -> None:
        """After each kernel: drop the clocks' graphs, then give cached memory back."""
        for clock in self.clocks:
            clock.release()
        self.torch.cuda.empty_cache()


class EventTimer:
    """Median of 10 calls after 3 warm-ups, each between CUDA events."""

    level = None  # a GPU's clock holds steady: nothing to take the time to the profile's speed

    def time(self, fn) -> dict:
        return {"measured_s": time_call(fn, "cuda")}
