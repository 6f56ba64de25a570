"""The concurrency model: kernels co-running on one device share its SMs, compute and bandwidth.

Each kernel's demand is its alone-time use of three resources: the device's
compute (FLOPs at the datasheet peak over its time), its memory bandwidth
(bytes over its time) and its SMs (the fraction of the device its grid of
thread blocks fills: output tiles of 128 x 128 for matrix kernels, one resident
block per SM; 1024 elements per block and 8 resident blocks per SM for the
rest). While the sum of demands over the co-running kernels exceeds 1 on any
resource, every co-runner progresses slower by the same factor:

    slowdown = max(1, sum compute, sum bandwidth, sum SM occupancy)

The SM term is what measurement demanded: on the H100, a large GEMM or
convolution co-running with a large memory-bound kernel on another stream took
0.88-0.97 of their serial time (calibration/validation/h100-concurrency.csv),
because each grid fills every SM; compute and bandwidth alone predicted overlaps
of 23-44% too much. Small kernels (small batch, low-resolution UNet levels) and
the gaps where the device waits for the host leave SMs free for a co-runner.

A call is a sequence of segments: maximal runs of consecutive kernels of the
same character (compute- or memory-bound), each spanning its kernels' alone
timeline, host gaps included, with the demands averaged over that span.
`slowdown` is the replaceable function; `co_run` integrates it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from emulator.shapes import Attention, Conv, Linear, Matmul

EPS_S = 1e-12  # a segment with less left than this has ended


@dataclass(frozen=True)
class Segment:
    alone_s: float  # duration when running alone
    compute: float  # fraction of the device's compute peak used alone, 0..1
    memory: float  # fraction of its memory bandwidth used alone, 0..1
    occupancy: float  # fraction of its SMs its thread blocks fill, 0..1
    flops: float
    bytes: float


TILE = 128  # output tile edge of a matrix kernel's thread block
ELEMENTS_PER_BLOCK = 1024  # elements a memory-bound kernel's block handles
MEMORY_BLOCKS_PER_SM = 8  # resident blocks of a memory-bound kernel per SM


def slowdown(compute: float, memory: float, occupancy: float) -> float:
    """Factor by which every co-runner is slowed, from the summed demands."""
    return max(1.0, compute, memory, occupancy)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def tiles(m: int, n: int) -> int:
    """Output tiles of an m x n matrix product: one thread block each."""
    return ceil_div(m, TILE) * ceil_div(n, TILE)


def linear_blocks(a: Linear, attention: str) -> int:
    return tiles(a.m, a.n)


def matmul_blocks(a: Matmul, attention: str) -> int:
    return a.batch * tiles(a.m, a.n)


def conv_blocks(a: Conv, attention: str) -> int:
    return tiles(a.output_elements // a.c_out, a.c_out)  # implicit GEMM: output pixels x output channels


def attention_blocks(a: Attention, attention: str) -> int:
    """Per (batch, head) one block per query tile; the baseline's similarity matrix tiles keys too."""
    kv_tiles = ceil_div(a.kv_len, TILE) if attention == "baseline" else 1
    return a.batch * a.heads * ceil_div(a.q_len, TILE) * kv_tiles


MATRIX_BLOCKS = {Linear: linear_blocks, Matmul: matmul_blocks, Conv: conv_blocks, Attention: attention_blocks}


def occupancy(op, attention: str, sms: int) -> float:
    """Fraction of the device's SMs the op's thread blocks fill when it runs alone."""
    blocks = MATRIX_BLOCKS.get(type(op.shape))
    if blocks is None:  # memory-bound: one block per ELEMENTS_PER_BLOCK outputs, several resident per SM
        return min(1.0, op.shape.output_elements / ELEMENTS_PER_BLOCK / (sms * MEMORY_BLOCKS_PER_SM))
    return min(1.0, blocks(op.shape, attention) / sms)


def demands(flops: np.ndarray, moved: np.ndarray, ops: Sequence, device) -> tuple[np.ndarray, np.ndarray]:
    """Seconds each op would need at the datasheet compute peak and at the bandwidth peak."""
    rate = np.array([device.peak_flops_per_s(op) for op in ops])
    return flops / rate, moved / device.bytes_per_s


def kernel_segments(kernel_s: np.ndarray, dispatched_s: np.ndarray, compute_s: np.ndarray, memory_s: np.ndarray,
                    occupied: np.ndarray, flops: np.ndarray, moved: np.ndarray,
                    synchronous: bool) -> tuple[Segment, ...]:
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
        segments.append(Segment(float(start[0]), 0.0, 0.0, 0.0, 0.0, 0.0))
    for a, b in itertools.pairwise(bounds):
        span = float((start[b] if b < n else end) - start[a])
        if span <= 0:
            continue
        segments.append(Segment(
            alone_s=float(span),
            compute=min(1.0, float(compute_s[a:b].sum()) / span),
            memory=min(1.0, float(memory_s[a:b].sum()) / span),
            occupancy=min(1.0, float((occupied[a:b] * kernel_s[a:b]).sum()) / span),
            flops=float(flops[a:b].sum()),
            bytes=float(moved[a:b].sum()),
        ))
    return tuple(segments)


@dataclass(frozen=True)
class CoRun:
    """What co-running calls until the first ends did."""

    wall_s: float  # wall time it took
    busy_s: float  # of which some co-runner was running (not all idling for their stagger)
    alone_s: float  # alone time every co-runner advanced by
    flops: float  # performed by all co-runners
    bytes: float  # moved by all co-runners
    states: tuple[tuple[int, float, float], ...]  # per co-runner: (segment index, alone s left in it, idle s left)
    ended: tuple[int, ...]  # indices of the co-runners whose call ended


def co_run(states: list) -> CoRun:
    """Co-run calls until the first ends.

    states: per co-runner [segments, index of the running segment, alone s left in it, alone s to idle
    first]. Every co-runner advances at rate 1 / slowdown, so offsets in alone time never change.
    """
    states = [list(s) for s in states]
    wall_s = busy_s = alone_s = flops = moved = 0.0
    while True:
        compute = memory = occupied = 0.0
        step_s = float("inf")
        for segments, index, left_s, wait_s in states:
            if wait_s > 0:
                step_s = min(step_s, wait_s)
            else:
                seg = segments[index]
                compute += seg.compute
                memory += seg.memory
                occupied += seg.occupancy
                step_s = min(step_s, left_s)
        rate = slowdown(compute, memory, occupied)
        wall_s += step_s * rate
        if any(s[3] <= 0 for s in states):
            busy_s += step_s * rate
        alone_s += step_s
        for segments, index, _, wait_s in states:
            if wait_s <= 0:
                seg = segments[index]
                flops += seg.flops * step_s / seg.alone_s
                moved += seg.bytes * step_s / seg.alone_s
        ended = []
        for i, s in enumerate(states):
            if s[3] > 0:
                s[3] = 0.0 if s[3] - step_s <= EPS_S else s[3] - step_s
                continue
            s[2] -= step_s
            if s[2] <= EPS_S:
                s[1] += 1
                if s[1] == len(s[0]):
                    ended.append(i)
                else:
                    s[2] = s[0][s[1]].alone_s
        if ended:
            return CoRun(wall_s, busy_s, alone_s, flops, moved, tuple((s[1], s[2], s[3]) for s in states),
                         tuple(ended))


def joint_time(calls: list[tuple[Segment, ...]]) -> float:
    """Wall time until every one of several calls, started together, has ended."""
    states = [(segs, 0, segs[0].alone_s, 0.0) for segs in calls]
    total = 0.0
    while states:
        run = co_run(states)
        total += run.wall_s
        states = [(states[i][0], *run.states[i][:2], 0.0) for i in range(len(states)) if i not in run.ended]
    return total


def op_segment(op, seconds: float, attention: str, device) -> Segment:
    """One kernel alone as a segment, for checking the model against measured pairs."""
    from emulator.cost.kernels import work

    flops, moved = work(op, attention)
    rate = device.peak_flops_per_s(op)
    return Segment(seconds, min(1.0, flops / rate / seconds), min(1.0, moved / device.bytes_per_s / seconds),
                   occupancy(op, attention, device.sms), flops, moved)
