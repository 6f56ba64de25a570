"""Timing a whole model at a CPU profile's reference speed, the reference read between its modules.

A CPU profile's kernel times are taken to the speed its compute reference had at
the start of the calibration (calibration/drift.py): every batch of a kernel's
samples, a few ms to a few hundred ms long, is bracketed by the reference. A
model call of seconds bracketed the same way, once before and once after, was
normalized by two point readings of a speed that moves within seconds: on the
development VM three interleaved cycles of the SD UNet at 256x256 came out
0.85-1.30x its kernels alone through that clock, while the raw times were
0.93-1.00x.

So the model is cut into segments of about `interval_s` of its own work. A
forward pre-hook on every submodule checks the time at each module's entry;
once a segment is that long, it stops the segment, reads the reference (its
time is not the model's), and starts the next. Each segment is taken to the
reference speed by the readings around it, like a batch of kernel samples.
Where the profile has fitted exponents (calibration/elasticity.py), the
readings' level over all calls is taken to the profile's speeds by the roofline
shares, as the profile's kernels were, and each segment's readings against
that level by the fitted exponents, which describe only such fluctuations:

    segment * (baseline_s / level)^w * (level / sqrt(ref_before * ref_after))^e_c
            * (the same for the weight-stream reference, with v and e_s)

Without them the level is each segment's own readings (the shares alone).
w, v, e_c and e_s are the graph's kernels' own, weighted by their predicted
times: a memory-bound LLaMA decode step has a v of 0.9, the convolutional
models next to none, and below 0.05 the stream reference is not read. A call's
time is the sum of its segments.
With 20 ms segments the same cycles came out 0.94-1.10x the kernels alone, the
five calls of one cycle within 5% of each other.

What the segments cost the model: each reading (two 384^3 matmuls, ~2 ms, and
where v counts, two one-row linears, ~9 ms) replaces the model's data in the
caches with the references' operands, so the module after it starts colder
than it would have; every module entry pays a Python hook of about a
microsecond.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

from calibration.drift import MIN_STREAM_SHARE


@dataclass(frozen=True)
class ModelTiming:
    normalized_s: float  # median over calls, at the profile's reference speed
    raw_s: float  # median over calls, as measured now
    segments_per_call: int


class SegmentedModelClock:
    """Forward pre-hooks on every submodule of `module` that cut a call into reference-bracketed segments."""

    def __init__(self, module, reference, baseline_s: float, compute_share: float, interval_s: float = 0.02,
                 stream_baseline_s: float | None = None, stream_share: float = 0.0,
                 exponents: tuple[float, float] | None = None):
        """compute_share, stream_share: the level's exponents (w, v); exponents: the fluctuations' (e_c, e_s)."""
        self.reference = reference  # calibration.drift.DriftReference, or anything with its two readings
        self.baseline_s = baseline_s
        self.stream_baseline_s = stream_baseline_s
        self.shares = (compute_share, stream_share if stream_baseline_s else 0.0)
        self.exponents = exponents if exponents is not None else self.shares
        self.reads_stream = bool(stream_baseline_s) and max(self.shares[1], self.exponents[1]) >= MIN_STREAM_SHARE
        self.interval_s = interval_s
        self.active = False
        self.handles = [m.register_forward_pre_hook(self._at_module_entry) for m in module.modules()]

    def _at_module_entry(self, *_):
        if not self.active:
            return
        now = time.perf_counter()
        if now - self.segment_start >= self.interval_s:
            self._close_segment(now)

    def _read(self) -> tuple[float, float]:
        """(compute reference, weight-stream reference or 1.0 where it does not apply)."""
        stream = self.reference.weight_stream() if self.reads_stream else 1.0
        return self.reference.compute_warm(), stream

    def _close_segment(self, now: float) -> None:
        reading = self._read()
        self.segments.append((now - self.segment_start, self.reading, reading))
        self.reading = reading
        self.segment_start = time.perf_counter()  # after the reading: it is not the model's time

    def call(self, fn) -> list[tuple[float, tuple, tuple]]:
        """(seconds, readings before, readings after) of each segment of one call of fn."""
        self.segments = []
        self.reading = self._read()
        self.active = True
        self.segment_start = time.perf_counter()
        try:
            fn()
        finally:
            now = time.perf_counter()
            self.active = False
        self._close_segment(now)
        return self.segments

    @staticmethod
    def level(calls) -> tuple[float, float]:
        """The readings' (compute, stream) geometric means over segments of all calls, weighted by their times."""
        segments = [seg for call in calls for seg in call]
        total = sum(s for s, _, _ in segments) or 1.0
        return tuple(math.exp(sum(s * math.log(math.sqrt(before[i] * after[i])) for s, before, after in segments)
                              / total) for i in (0, 1))

    def normalized(self, segments, level: tuple[float, float] | None = None) -> float:
        """The call's time at the baselines: the readings' level taken there by the shares, each segment's
        reading against the level by the exponents; without a level, each segment by the shares alone."""
        (w, v), (e_c, e_s) = self.shares, self.exponents
        total = 0.0
        for s, (compute_before, stream_before), (compute_after, stream_after) in segments:
            compute, stream = math.sqrt(compute_before * compute_after), math.sqrt(stream_before * stream_after)
            level_c, level_s = level or (compute, stream)
            scale = (self.baseline_s / level_c) ** w * (level_c / compute) ** e_c
            if self.reads_stream:
                scale *= (self.stream_baseline_s / level_s) ** v * (level_s / stream) ** e_s
            total += s * scale
        return total

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def time_model(module, fn, reference, baseline_s: float, compute_share: float, warmup: int = 1,
               calls: int = 5, interval_s: float = 0.02, stream_baseline_s: float | None = None,
               stream_share: float = 0.0, exponents: tuple[float, float] | None = None) -> ModelTiming:
    """Median of `calls` calls of fn (which runs module), each at the profile's reference speed."""
    for _ in range(warmup):
        fn()
    clock = SegmentedModelClock(module, reference, baseline_s, compute_share, interval_s, stream_baseline_s,
                                stream_share, exponents)
    try:
        per_call = [clock.call(fn) for _ in range(calls)]
    finally:
        clock.remove()
    level = clock.level(per_call) if exponents is not None else None
    return ModelTiming(normalized_s=statistics.median(clock.normalized(s, level) for s in per_call),
                       raw_s=statistics.median(sum(seg[0] for seg in s) for s in per_call),
                       segments_per_call=round(statistics.median(len(s) for s in per_call)))
