"""Correcting the drift of a shared machine's speed during a calibration run.

On a shared virtual machine the speed drifts by tens of percent over seconds to
minutes (noisy neighbours, frequency changes), more than any timer's error.
Around each kernel the run times two small reference kernels, one compute-bound
(a 384^3 matmul) and one memory-bound (a copy larger than the last-level
cache). A kernel's median is then rescaled to the run's typical speed:

    corrected = median * (ref_c_run / ref_c_now)^w * (ref_m_run / ref_m_now)^(1 - w)

with ref_*_run the median of a reference over the whole run and w the share of
compute in the kernel's roofline time on the catalog device (1: compute-bound,
0: memory-bound). Normalizing by a same-character reference measured alongside
cut the window-to-window spread of a linear and a conv kernel from about 12%
to about 4% on the development machine.
"""

from __future__ import annotations

import math
import statistics
import time

from emulator.cost.kernels import work
from emulator.devices import Device
from emulator.ops import Op


class DriftReference:
    """Times the two reference kernels (median of a few runs each)."""

    def __init__(self, copy_bytes: float = 64e6):
        import torch

        self.a, self.b = torch.rand(384, 384), torch.rand(384, 384)
        self.src = torch.rand(int(copy_bytes // 4))
        self.dst = torch.empty_like(self.src)

    def measure(self, runs: int = 5) -> tuple[float, float]:
        def median_time(fn):
            samples = []
            for _ in range(runs):
                t = time.perf_counter()
                fn()
                samples.append(time.perf_counter() - t)
            return statistics.median(samples)

        return median_time(lambda: self.a @ self.b), median_time(lambda: self.dst.copy_(self.src))


def compute_share(kind: str, shape, dtype: str, device: Device) -> float:
    """w: the compute part of the kernel's roofline time on the device."""
    op = Op("", shape, dtype)
    attention = kind.removeprefix("attention_") if kind.startswith("attention_") else "flash"
    flops, nbytes = work(op, attention)
    rate = device.matmul_flops_per_s(dtype) if op.mac_flops else device.vector_flops_per_s
    compute, memory = flops / rate, nbytes / device.bytes_per_s
    return compute / (compute + memory) if compute + memory > 0 else 0.0


def correction(w: float, ref_now: tuple[float, float], ref_run: tuple[float, float]) -> float:
    """Factor that takes a time measured at `ref_now` speed to the run's typical speed."""
    (c_now, m_now), (c_run, m_run) = ref_now, ref_run
    return math.exp(w * math.log(c_run / c_now) + (1 - w) * math.log(m_run / m_now))
