"""Correcting the drift of a shared machine's speed during a CPU calibration run.

On a shared virtual machine the speed drifts by tens of percent within seconds
(noisy neighbours, frequency changes): more than any timer's error. Two
reference kernels track it. A compute-bound one (a 384^3 fp32 matmul, ~1 ms,
timed on its second run so that its operands are in cache whatever ran before)
runs before and after every batch of samples, and the samples are rescaled to
the speed the reference had at the start of the run:

    sample * (ref_c_start / ref_c_now)^w,   ref_c_now the batch's two references' geometric mean

A memory-bound one (a copy larger than the last-level cache) runs before and
after each kernel, and the kernel's median is rescaled by
(ref_m_run / ref_m_now)^(1 - w), ref_m_run its median over the run. w is the
share of compute in the kernel's roofline time on the catalog device. On the
development machine, interleaving the compute reference cut the spread of
repeated measurements of a linear kernel from 24% to 4% (coefficient of
variation), of a conv from 23% to 7%, of flash attention from 18% to 6%.
"""

from __future__ import annotations

import math
import statistics
import time

from emulator.cost.kernels import work
from emulator.devices import Device
from emulator.ops import Op


class DriftReference:
    """The two reference kernels."""

    def __init__(self, copy_bytes: float = 64e6):
        import torch

        self.a, self.b = torch.rand(384, 384), torch.rand(384, 384)
        self.src = torch.rand(int(copy_bytes // 4))
        self.dst = torch.empty_like(self.src)

    def compute_once(self) -> float:
        t = time.perf_counter()
        self.a @ self.b
        return time.perf_counter() - t

    def compute_warm(self) -> float:
        """One timed run after an untimed one, so the time does not depend on what ran before.

        Run cold, right after a kernel that evicted its 1.7 MB of operands, the reference took
        1.11 ms against 0.83-0.90 ms warm on the development CPU: a sample rescaled by the cold
        time came out 20-25% fast for kernels with big working sets, not for small ones.
        """
        self.a @ self.b
        return self.compute_once()

    def memory(self, runs: int = 3) -> float:
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            self.dst.copy_(self.src)
            samples.append(time.perf_counter() - t)
        return statistics.median(samples)


class DriftCorrectedCpuClock:
    """perf_counter around each run, a batch of samples rescaled by the compute references around it.

    The kernel runs once untimed after the reference and then back to back. Timed right after the
    reference, as it was first, a small kernel paid for the reference's eviction of its operands and
    of the dispatch path: on the development CPU a 320-element layer norm took 36-39 us against 8-9 us
    back to back, a 128-element add 14-17 us against 4 us, a 32768-element group norm 54-65 us
    against 22-25 us, and the penalty varied 2-3x from pass to pass.
    """

    name = "perf_counter, drift-corrected"

    def __init__(self, reference: DriftReference):
        self.reference = reference
        for _ in range(20):
            reference.compute_once()
        self.baseline_s = statistics.median(reference.compute_warm() for _ in range(50))
        self.compute_share = 1.0  # set per kernel
        self.ratios: list[float] = []  # reference now / at start, per sample

    def samples(self, run, first: int, n: int) -> list[float]:
        before = self.reference.compute_warm()
        run(first - 1)  # untimed, on the previous sample's buffers: operands and code back in cache
        elapsed = []
        for i in range(first, first + n):
            t = time.perf_counter()
            run(i)
            elapsed.append(time.perf_counter() - t)
        ratio = math.sqrt(before * self.reference.compute_warm()) / self.baseline_s
        self.ratios.append(ratio)
        return [e / ratio**self.compute_share for e in elapsed]


def compute_share(kind: str, shape, dtype: str, device: Device) -> float:
    """w: the compute part of the kernel's roofline time on the device."""
    op = Op("", shape, dtype)
    attention = kind.removeprefix("attention_") if kind.startswith("attention_") else "flash"
    flops, nbytes = work(op, attention)
    rate = device.matmul_flops_per_s(dtype) if op.mac_flops else device.vector_flops_per_s
    compute, memory = flops / rate, nbytes / device.bytes_per_s
    return compute / (compute + memory) if compute + memory > 0 else 0.0


def memory_correction(w: float, memory_now_s: float, memory_run_s: float) -> float:
    """Factor taking a time measured at the memory reference's current speed to its typical speed."""
    return math.exp((1 - w) * math.log(memory_run_s / memory_now_s))


def normalized_cpu_time(fn, reference: DriftReference, compute_s: float, memory_s: float, w: float,
                        warmup: int = 2, repeats: int = 7) -> float:
    """Median time of fn, each sample taken to the speed a profile was normalized to.

    compute_s and memory_s are the profile's reference timings (its `drift_reference`); w is the
    compute share of fn's work. Used to compare a whole model's time with a CPU profile's prediction.
    """
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        # The references run right before and right after fn, and their geometric mean stands for the
        # speed during it: one taken before alone misses a slow spell that starts while fn runs.
        compute_before = statistics.median(reference.compute_warm() for _ in range(5))
        memory_before = reference.memory()
        t = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - t
        memory_now = math.sqrt(memory_before * reference.memory())
        compute_now = math.sqrt(compute_before * statistics.median(reference.compute_warm() for _ in range(5)))
        samples.append(elapsed * (compute_s / compute_now) ** w * memory_correction(w, memory_now, memory_s))
    return statistics.median(samples)
