"""Timing kernels right: warm-up, repeats until the median is stable, slow outliers re-measured.

Two clocks share one loop: `CpuClock` (perf_counter around each run; CPU torch
ops return when done) and `CudaClock` (a pair of CUDA events around each run;
a sleep kernel first lets the host queue a batch ahead, so the events measure
device time, not the host's dispatch). Every sample runs on the next input
buffer set. Samples slower than median + max(6 MAD, 5% of median) are
interference: they are dropped and more samples are taken.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable


@dataclass(frozen=True)
class Timing:
    median_s: float
    min_s: float
    spread: float  # (p90 - p10) / median of the kept samples
    repeats: int  # kept samples
    rejected: int  # slow outliers dropped and re-measured

    def asdict(self) -> dict:
        return asdict(self)


class CpuClock:
    name = "perf_counter"

    def start(self, kind: str, shape, dtype: str) -> None:
        pass

    def readings(self) -> dict:
        return {}

    def samples(self, run: Callable[[int], object], first: int, n: int) -> list[float]:
        out = []
        for i in range(first, first + n):
            t = time.perf_counter()
            run(i)
            out.append(time.perf_counter() - t)
        return out


class CudaClock:
    name = "cuda events"
    HOST_LEAD_CYCLES_PER_SAMPLE = 200_000  # ~100 us at ~2 GHz: room for the host to queue each sample

    def __init__(self):
        import torch

        self.torch = torch

    def start(self, kind: str, shape, dtype: str) -> None:
        pass

    def readings(self) -> dict:
        return {}

    def samples(self, run: Callable[[int], object], first: int, n: int) -> list[float]:
        torch = self.torch
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(n)]
        torch.cuda.synchronize()
        torch.cuda._sleep(self.HOST_LEAD_CYCLES_PER_SAMPLE * n)
        for j in range(n):
            starts[j].record()
            run(first + j)
            ends[j].record()
        torch.cuda.synchronize()
        return [s.elapsed_time(e) * 1e-3 for s, e in zip(starts, ends)]


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def measure(run: Callable[[int], object], clock, *, warmup: int = 3, min_repeats: int = 7, max_repeats: int = 200,
            batch: int = 5, tolerance: float = 0.02, budget_s: float = 1.0) -> Timing:
    """Median kernel time of `run(i)`, repeated until two successive medians agree within `tolerance`."""
    for i in range(warmup):
        run(i)
    samples: list[float] = []
    rejected = taken = 0
    previous = None
    start = time.perf_counter()
    while True:
        samples += clock.samples(run, warmup + taken, batch)
        taken += batch
        median = statistics.median(samples)
        mad = statistics.median(abs(s - median) for s in samples)
        limit = median + max(6 * mad, 0.05 * median)
        kept = [s for s in samples if s <= limit]
        rejected += len(samples) - len(kept)
        samples = kept
        median = statistics.median(samples)
        stable = previous is not None and abs(median - previous) <= tolerance * previous
        if (len(samples) >= min_repeats and stable) or taken >= max_repeats or time.perf_counter() - start > budget_s:
            break
        previous = median
    ordered = sorted(samples)
    return Timing(median, ordered[0], (_quantile(ordered, 0.9) - _quantile(ordered, 0.1)) / median, len(samples),
                  rejected)


def time_call(fn, device: str, warmup: int = 3, repeats: int = 10) -> float:
    """Median seconds of a whole call (a model's forward), CUDA events around it on a GPU."""
    import torch

    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) * 1e-3)
        else:
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
    return statistics.median(samples)
