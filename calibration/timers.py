"""Timing kernels right: warm-up, repeats until the median is stable, slow outliers re-measured.

A kernel's time is its device execution time in a back-to-back replay, launch
excluded: the host's launch cost is the emulator's host model (a profile's
"host" section; emulator/cost/runtime.py), so it must not be in kernel times
too. Two clocks share one loop: `CpuClock` (perf_counter around each run; CPU
torch ops return when done, so host work is in the time and the CPU setup
declares it) and `CudaGraphClock` (R launches of the kernel captured in one
CUDA graph, each replay between CUDA events, divided by R). Every run takes
the next input buffer set. Samples slower than median + max(6 MAD, 5% of
median) are interference: they are dropped and more samples are taken.
`time_call` times a whole model call (validation), launches included.
"""

from __future__ import annotations

import math
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


class CudaGraphClock:
    """Device time per launch of a kernel replayed back to back from a CUDA graph: launch cost excluded.

    Before a kernel's first sample it times one eager run (a probe), picks R launches so that one replay
    lasts about TARGET_REPLAY_S, and captures run(first), ..., run(first + R - 1) in one graph: the R
    launches rotate over the input sets as eager runs do. A sample is one replay between two CUDA events,
    divided by R; a sleep kernel first lets the host queue the batch, so the events see device time
    only. `torch` is injectable (tests pass a fake); nothing touches CUDA before the first sample.
    """

    name = "cuda-graph replay"
    TARGET_REPLAY_S = 1e-3  # one replay: the graph's own launch and the events cost under 1% of it
    MAX_LAUNCHES = 256
    HOST_LEAD_CYCLES_PER_SAMPLE = 200_000  # ~100 us at ~2 GHz: room for the host to queue each sample

    def __init__(self, torch_module=None):
        if torch_module is None:
            import torch as torch_module
        self.torch = torch_module
        self.graph, self.run, self.launches = None, None, 0

    def start(self, kind: str, shape, dtype: str) -> None:
        self.release()

    def readings(self) -> dict:
        return {"launches_per_replay": self.launches}

    def release(self) -> None:
        """Drop the captured graph (its memory pool) and the kernel's inputs it holds."""
        self.graph, self.run = None, None

    def samples(self, run: Callable[[int], object], first: int, n: int) -> list[float]:
        if self.graph is None or run != self.run:  # a new kernel (== : bound methods are made anew)
            self.capture(run, first)
        cuda = self.torch.cuda
        starts = [cuda.Event(enable_timing=True) for _ in range(n)]
        ends = [cuda.Event(enable_timing=True) for _ in range(n)]
        cuda.synchronize()
        cuda._sleep(self.HOST_LEAD_CYCLES_PER_SAMPLE * n)
        for j in range(n):
            starts[j].record()
            self.graph.replay()
            ends[j].record()
        cuda.synchronize()
        return [s.elapsed_time(e) * 1e-3 / self.launches for s, e in zip(starts, ends)]

    def capture(self, run: Callable[[int], object], first: int) -> None:
        """Probe one eager run, then capture R launches of the kernel in a fresh graph and replay it once."""
        cuda = self.torch.cuda
        self.release()
        self.launches = launches_per_replay(self.probe(run, first), self.TARGET_REPLAY_S, self.MAX_LAUNCHES)
        cuda.synchronize()
        cuda.empty_cache()  # the eager runs' cached blocks: the graph allocates from a pool of its own
        graph = cuda.CUDAGraph()
        with cuda.graph(graph):
            for j in range(self.launches):
                run(first + j)
        graph.replay()  # the first replay uploads the graph: not timed
        cuda.synchronize()
        self.graph, self.run = graph, run

    def probe(self, run: Callable[[int], object], first: int) -> float:
        """Seconds of one eager run between CUDA events, queued behind a sleep: an upper bound of its time."""
        cuda = self.torch.cuda
        start, end = cuda.Event(enable_timing=True), cuda.Event(enable_timing=True)
        cuda.synchronize()
        cuda._sleep(self.HOST_LEAD_CYCLES_PER_SAMPLE)
        start.record()
        run(first)
        end.record()
        cuda.synchronize()
        return start.elapsed_time(end) * 1e-3


def launches_per_replay(probe_s: float, target_s: float, max_launches: int) -> int:
    """Launches per graph replay: enough for a replay of about target_s, from 1 to max_launches."""
    return max(1, min(max_launches, math.ceil(target_s / max(probe_s, 1e-9))))


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
