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
reference speed by the geometric mean of the readings around it, like a batch
of kernel samples:

    segment * (baseline_s / sqrt(ref_before * ref_after))^e_c
            * (stream_baseline_s / sqrt(stream_before * stream_after))^e_s

e_c and e_s are the graph's compute and weight-stream exponents, its kernels'
own weighted by their predicted times: fitted per kind from the calibration's
passes where the profile records them (calibration/elasticity.py), else the
roofline shares (calibration/drift.py). A memory-bound LLaMA decode step has
an e_s of 0.9, the convolutional models none, and below 0.05 the stream
reference is not read. A call's time is the sum of its segments.
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

    def __init__(self, module, reference, baseline_s: float, compute_exponent: float, interval_s: float = 0.02,
                 stream_baseline_s: float | None = None, stream_exponent: float = 0.0):
        self.reference = reference  # calibration.drift.DriftReference, or anything with its two readings
        self.baseline_s = baseline_s
        self.compute_exponent = compute_exponent
        self.stream_baseline_s = stream_baseline_s
        self.stream_exponent = stream_exponent if stream_baseline_s and stream_exponent >= MIN_STREAM_SHARE else 0.0
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
        stream = self.reference.weight_stream() if self.stream_exponent else 1.0
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

    def normalized(self, segments) -> float:
        total = 0.0
        for s, (compute_before, stream_before), (compute_after, stream_after) in segments:
            scale = (self.baseline_s / math.sqrt(compute_before * compute_after)) ** self.compute_exponent
            if self.stream_exponent:
                scale *= (self.stream_baseline_s / math.sqrt(stream_before * stream_after)) ** self.stream_exponent
            total += s * scale
        return total

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def time_model(module, fn, reference, baseline_s: float, compute_exponent: float, warmup: int = 1,
               calls: int = 5, interval_s: float = 0.02, stream_baseline_s: float | None = None,
               stream_exponent: float = 0.0) -> ModelTiming:
    """Median of `calls` calls of fn (which runs module), each at the profile's reference speed."""
    for _ in range(warmup):
        fn()
    clock = SegmentedModelClock(module, reference, baseline_s, compute_exponent, interval_s, stream_baseline_s,
                                stream_exponent)
    try:
        per_call = [clock.call(fn) for _ in range(calls)]
    finally:
        clock.remove()
    return ModelTiming(normalized_s=statistics.median(clock.normalized(s) for s in per_call),
                       raw_s=statistics.median(sum(seg[0] for seg in s) for s in per_call),
                       segments_per_call=round(statistics.median(len(s) for s in per_call)))
