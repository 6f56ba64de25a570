"""The concurrency model: hand-calculated co-runs, and its error against pairs measured on an H100."""

import csv
from pathlib import Path

import pytest

from emulator.devices import device
from emulator.engine.concurrency import (
    Segment,
    co_run,
    joint_time,
    occupancy,
    op_segment,
)
from emulator.ops import Op
from emulator.shapes import Attention, Elementwise, Linear, Matmul

T = 1e-3


def seg(compute, memory, occ, alone_s=T):
    return Segment(alone_s, compute, memory, occ, 0.0, 0.0)


def test_two_compute_bound_calls_gain_nothing_from_any_offset():
    # Each alone saturates compute: together they take the sum, however they are staggered.
    call = (seg(1.0, 0.1, 1.0), seg(1.0, 0.1, 1.0))
    for offset in (0.0, 0.25 * T, 0.5 * T, 1.5 * T):
        wall = co_run([(call, 0, T, 0.0), (call, 0, T, offset)]).wall_s
        # the first call ends after 2 T of its own work shared at rate 1/2, minus what ran alone first
        assert wall == pytest.approx(4 * T - min(offset, 2 * T), rel=1e-12)
    assert joint_time([call, call]) == pytest.approx(4 * T)


def test_a_compute_bound_and_a_memory_bound_call_overlap_fully():
    compute = (seg(0.9, 0.05, 0.5),)
    memory = (seg(0.02, 0.9, 0.5),)
    assert joint_time([compute, memory]) == pytest.approx(T)


def test_partial_demands_slow_both_by_their_largest_sum():
    # compute sums to 1.2, bandwidth to 0.6, SMs to 0.8: both run 1.2x slower, ending at 1.2 T
    a, b = (seg(0.6, 0.3, 0.4),), (seg(0.6, 0.3, 0.4),)
    assert joint_time([a, b]) == pytest.approx(1.2 * T)


def test_occupancy_of_small_and_large_kernels():
    sms = 108
    # a 128 x 128 output is one tile: one SM of 108
    assert occupancy(Op("x", Linear(128, 4096, 128), "fp16"), "flash", sms) == pytest.approx(1 / sms)
    assert occupancy(Op("x", Linear(8192, 8192, 8192), "fp16"), "flash", sms) == 1.0
    # 1024 x 8 x 108 elements fill every SM's eight resident blocks
    assert occupancy(Op("x", Elementwise("add", 1024 * 8 * 54, 2), "fp16"), "flash", sms) == pytest.approx(0.5)
    # a batch of 3 products of 256 x 128 outputs: 3 x 2 tiles
    assert occupancy(Op("x", Matmul(3, 256, 64, 128), "fp16"), "flash", sms) == pytest.approx(6 / sms)
    # flash: one block per (batch, head, query tile); the baseline tiles the keys too (2 x 4 x 2 x 3)
    small = Op("x", Attention(2, 4, 256, 300, 64), "fp16")
    assert occupancy(small, "flash", sms) == pytest.approx(16 / sms)
    assert occupancy(small, "baseline", sms) == pytest.approx(48 / sms)


MEASURED = Path(__file__).parents[1] / "calibration" / "validation" / "h100-concurrency.csv"


def test_the_model_predicts_measured_h100_pairs_within_15_percent():
    """Pairs of large kernels on two CUDA streams, measured on the lent H100 (calibration concurrency)."""
    pytest.importorskip("torch")  # the kernel table lives beside its torch runners
    from calibration.concurrency import KERNELS

    h100 = device("h100-sxm")
    errors = []
    for row in csv.DictReader(MEASURED.open()):
        calls = [(op_segment(Op(row[k], KERNELS[row[k]][1], "fp16"), float(row[f"alone_{k}_ms"]) * 1e-3,
                             "flash", h100),) for k in "ab"]
        measured = float(row["joint_ms"]) * 1e-3
        errors.append((joint_time(calls) - measured) / measured)
    assert len(errors) == 6
    assert max(abs(e) for e in errors) <= 0.15, errors
