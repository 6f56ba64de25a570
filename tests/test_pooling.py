"""Pooling a measured kernel's entry with its neighbours: the variances, the weights, where it applies."""

import math

import numpy as np
import pytest

from calibration.pooling import FLOOR_VARIANCE, pass_variance, pool, pooled_seconds
from emulator.cost.predictor import KindPredictor, fit_predictor, local_corrections
from tests.test_predictor import LINEARS, synthetic_seconds


def test_pass_variance_is_pooled_within_kernels_and_skips_single_passes():
    # Logs [0, 0.2]: squares 0.01 + 0.01, one dof; [0, 0.1, -0.1]: 0.01 + 0.01, two dof; [0.5]: none.
    logs = [np.array([0.0, 0.2]), np.array([0.0, 0.1, -0.1]), np.array([0.5])]
    assert pass_variance(logs) == pytest.approx(0.04 / 3)
    assert pass_variance([np.array([0.3]), np.array([0.1])]) is None


def test_pooled_residuals_match_a_hand_computation():
    # Two kernels of two passes each: logs [0, 0.2] and [0, 0]: s_p^2 = 0.02 / 2 = 0.01.
    passes = [[1.0, math.exp(0.2)], [1.0, 1.0]]
    residual = np.array([0.3, 0.1])  # log median / curve
    left_out = np.array([0.0, 0.1])  # the neighbours' plane at each, itself left out
    pooled, how = pool(residual, passes, left_out)
    # s_l^2 = mean((0.3 - 0)^2, 0) - 0.01 * mean(1/2, 1/2) = 0.045 - 0.005 = 0.04;
    # w = 0.04 / (0.04 + 0.01 / 2) = 8/9 for both; pooled = 8/9 * 0.3 + 1/9 * 0 and 0.1.
    assert how.pass_sd == pytest.approx(0.1) and how.interpolation_sd == pytest.approx(0.2)
    assert how.weights == pytest.approx([8 / 9, 8 / 9])
    assert pooled == pytest.approx([0.3 * 8 / 9, 0.1])
    assert how.one_pass_weight() == pytest.approx(0.04 / 0.05)


def test_neighbours_that_explain_every_entry_still_leave_the_measurement_a_weight():
    passes = [[1.0, math.exp(0.2)], [1.0, 1.0]]  # s_p^2 = 0.01
    residual = np.array([0.3, 0.1])
    _, how = pool(residual, passes, left_out=residual.copy())  # the plane hits every point
    assert how.interpolation_sd**2 == pytest.approx(FLOOR_VARIANCE)
    assert how.weights == pytest.approx([FLOOR_VARIANCE / (FLOOR_VARIANCE + 0.005)] * 2)


def test_entries_of_one_pass_each_are_used_as_measured():
    residual = np.array([0.3, 0.1])
    pooled, how = pool(residual, [[2.0], [3.0]], np.array([0.0, 0.0]))
    assert how is None and pooled is residual


def test_the_leave_one_out_plane_is_the_plane_without_that_point():
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(30, 2))
    residual = rng.normal(scale=0.1, size=30)
    every = local_corrections(xs, residual, xs, leave_out=np.arange(30))
    for i in (0, 7, 29):
        others = np.arange(30) != i
        assert every[i] == pytest.approx(local_corrections(xs[others], residual[others], xs[i:i + 1])[0])
    assert local_corrections(xs, residual, xs) == pytest.approx(residual)  # at a point: the point


def test_a_measured_shape_is_pooled_toward_its_neighbours_plane():
    times = synthetic_seconds(LINEARS)  # the curve's own family, exact: the plane's residuals are flat
    curve = fit_predictor("linear", "fp16", LINEARS, times).curve
    # One kernel read 30% slow in one of its two passes; the others' passes agree exactly.
    odd = 5
    passes = [[t, t] for t in times]
    passes[odd] = [times[odd], 1.3 * times[odd]]
    measured = list(times)
    measured[odd] = math.sqrt(1.3) * times[odd]  # geometric middle of its passes
    plain = KindPredictor("linear", "fp16", curve, LINEARS, measured)
    seconds, pooling = pooled_seconds(plain, measured, passes)
    assert plain.predict(LINEARS[odd]) == pytest.approx(measured[odd])
    # Pooled, it moves toward its neighbours' plane, which the odd pass did not touch.
    w = pooling.weights[odd]
    assert 0 < w < 1
    neighbours = plain.curve_time(LINEARS[odd]) * math.exp(pooling.left_out[odd])
    assert seconds[odd] == pytest.approx(measured[odd] ** w * neighbours ** (1 - w))
    assert times[odd] < seconds[odd] < measured[odd]
    # The agreeing kernels barely move: their own passes say they are exact.
    others = [i for i in range(len(LINEARS)) if i != odd]
    assert max(abs(seconds[i] / measured[i] - 1) for i in others) < 0.05
