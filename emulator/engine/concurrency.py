"""The concurrency model: kernels co-running on one device share its compute and bandwidth.

Each kernel's demand is its alone-time utilization of the device's compute
(FLOPs at the datasheet peak over its time) and of its memory bandwidth (bytes
over its time). While the sums of demands over the co-running kernels exceed 1
on either resource, every co-runner progresses slower by the same factor:

    slowdown = max(1, sum compute demands, sum bandwidth demands)

so two compute-bound kernels take as long together as one after the other,
while a compute-bound and a memory-bound kernel overlap. A call is a sequence
of segments: maximal runs of consecutive kernels of the same character
(compute- or memory-bound), each spanning its kernels' alone timeline including
the gaps where the device waits for the host, which a co-runner can fill.
`slowdown` is the replaceable function.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Segment:
    alone_s: float  # duration when running alone
    compute: float  # fraction of the device's compute peak used alone, 0..1
    memory: float  # fraction of its memory bandwidth used alone, 0..1
    flops: float
    bytes: float


def slowdown(compute: float, memory: float) -> float:
    """Factor by which every co-runner is slowed, from the summed demands."""
    return max(1.0, compute, memory)


def demands(flops: np.ndarray, moved: np.ndarray, ops: Sequence, device) -> tuple[np.ndarray, np.ndarray]:
    """Seconds each op would need at the datasheet compute peak and at the bandwidth peak."""
    rate = np.array([device.matmul_flops_per_s(op.dtype) if op.mac_flops else device.vector_flops_per_s
                     for op in ops])
    return flops / rate, moved / device.bytes_per_s


def kernel_segments(kernel_s: np.ndarray, dispatched_s: np.ndarray, compute_s: np.ndarray, memory_s: np.ndarray,
                    flops: np.ndarray, moved: np.ndarray, synchronous: bool) -> tuple[Segment, ...]:
    """Group one call's kernels, in their alone timeline, into segments of one character."""
    n = len(kernel_s)
    if n == 0:
        return ()
    start = np.empty(n)
    end = 0.0
    host = np.diff(dispatched_s, prepend=0.0)
    for j in range(n):  # the host/device recurrence of emulator.cost.timeline
        start[j] = end + host[j] if synchronous else max(end, dispatched_s[j])
        end = start[j] + kernel_s[j]
    compute_bound = compute_s >= memory_s
    firsts = [0] + [j for j in range(1, n) if compute_bound[j] != compute_bound[j - 1]]
    bounds = firsts + [n]
    segments = []
    if start[0] > 0:  # the device waits for the first dispatch
        segments.append(Segment(float(start[0]), 0.0, 0.0, 0.0, 0.0))
    for a, b in itertools.pairwise(bounds):
        span = float((start[b] if b < n else end) - start[a])
        if span <= 0:
            continue
        segments.append(Segment(
            alone_s=float(span),
            compute=min(1.0, float(compute_s[a:b].sum()) / span),
            memory=min(1.0, float(memory_s[a:b].sum()) / span),
            flops=float(flops[a:b].sum()),
            bytes=float(moved[a:b].sum()),
        ))
    return tuple(segments)
