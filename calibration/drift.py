"""Correcting the drift of a shared machine's compute speed during a CPU calibration run.

On a shared virtual machine the speed drifts by tens of percent within seconds
(noisy neighbours, frequency changes): more than any timer's error. Two
reference kernels track it. A compute-bound one (a 384^3 fp32 matmul, ~1 ms,
timed on its second run so that its operands are in cache whatever ran before)
runs before and after every batch of samples, and the samples are rescaled to
the speed the reference had at the start of the run:

    sample * (ref_c_start / ref_c_now)^w,   ref_c_now the batch's two references' geometric mean

w is the share of compute in the kernel's roofline time on the catalog device.
On the development machine, interleaving the compute reference cut the spread
of repeated measurements of a linear kernel from 24% to 4% (coefficient of
variation), of a conv from 23% to 7%, of flash attention from 18% to 6%; with
one reference per batch of samples instead of per sample, a later check gave
3%, 4% and 1%. Over 142 repeats in 2.5 minutes the times of compute-bound
kernels followed the reference with an elasticity of 0.74-1.01 (correlation
0.90-0.94).

A memory-bound reference (a 64 MB copy, larger than the last-level cache) is
timed around each kernel and recorded, but nothing is rescaled by it: kernel
times do not follow it. Between the passes of two full calibrations (1716 pairs
of pass medians of kernels with w < 0.3) the elasticity of a kernel's time to
it was 0.13 and -0.08 (correlation 0.09 and -0.05); a one-row linear streaming
67 MB of weights, 0.03. Rescaling by it, as the calibration first did, added
the reference's own 11-12% noise to every memory-bound kernel, and read 5-20%
slower right after a kernel than in a loop of its own, which inflated the
validation's normalized timings of memory-bound models by up to a third.
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

    def __init__(self, reference: DriftReference, baseline_s: float | None = None):
        """baseline_s: the speed to rescale to (a profile's); by default the reference's speed now."""
        self.reference = reference
        if baseline_s is None:
            for _ in range(20):
                reference.compute_once()
            baseline_s = statistics.median(reference.compute_warm() for _ in range(50))
        self.baseline_s = baseline_s
        self.compute_share = 1.0  # set per kernel
        self.ratios: list[float] = []  # reference now / at start, per batch of samples

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

