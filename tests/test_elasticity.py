"""Fitting how each kind's kernel times follow the drift references (calibration/elasticity.py).

The synthetic machines here slow every kernel by a known power of the references' readings; the fit must
recover that power where the roofline rule (exponent w for the compute reference, 1 - w for a linear's
weight-stream one) would be off by 0.3 or more.
"""

import math
import random
import statistics

import pytest

from calibration.elasticity import MIN_OBSERVATIONS, exponent, exponents, fit_exponents, fit_kind

BASELINE_S, STREAM_BASELINE_S = 1e-3, 4e-3


def entries_of(w: float, true_exponent, passes: int, rng: random.Random, v: float = 0.0, stream=None,
               slow_pass: int | None = None) -> list[dict]:
    """One kernel's entries: raw time = 1 ms * compute reading^e_c(w) * stream reading^e_s(w), as the
    calibration clock records it (rescaled by the rule: divided by the drifts to the powers w and v)."""
    entries = []
    for p in range(passes):
        compute_drift, stream_drift = math.exp(rng.gauss(0, 0.15)), math.exp(rng.gauss(0, 0.15))
        raw = 1e-3 * (compute_drift * BASELINE_S) ** true_exponent(w)
        if stream:
            raw *= (stream_drift * STREAM_BASELINE_S) ** stream(w)
        raw *= 3.0 if p == slow_pass else 1.0  # a neighbour's burst during this pass
        entry = {"median_s": raw / compute_drift**w, "compute_drift": compute_drift,
                 "compute_reference_s": BASELINE_S, "compute_share": w}
        if stream:
            entry["median_s"] /= stream_drift**v
            entry.update(stream_drift=stream_drift, stream_reference_s=STREAM_BASELINE_S, stream_share=v)
        entries.append(entry)
    return entries


def test_the_fit_recovers_a_kinds_exponents_where_the_rule_is_off():
    rng = random.Random(1)
    true = lambda w: 0.6 * w + 0.3 * (1 - w)  # noqa: E731 (the rule would give w: 0.3 off at w = 0)
    kernels = [entries_of(w, true, 4, rng) for w in (0.1, 0.3, 0.5, 0.7, 0.9) for _ in range(6)]
    fit = fit_kind(kernels)
    assert fit["observations"] == 30 * 3
    assert fit["compute"] == pytest.approx([0.6, 0.3], abs=0.05)
    assert "weight_stream" not in fit
    assert fit["log_spread"]["fitted"] < 0.01 < fit["log_spread"]["rule"]


def test_kernels_of_one_share_fix_the_exponent_at_that_share_and_keep_the_rules_split():
    rng = random.Random(2)
    true = lambda w: 0.6 * w + 0.3 * (1 - w)  # noqa: E731 (0.57 at w = 0.9, where the rule gives 0.9)
    fit = fit_kind([entries_of(0.9, true, 3, rng) for _ in range(20)])
    assert exponent(fit["compute"], 0.9) == pytest.approx(0.57, abs=0.02)


def test_a_pass_slowed_by_a_neighbour_is_dropped():
    rng = random.Random(3)
    true = lambda w: 0.5  # noqa: E731
    kernels = [entries_of(w, true, 4, rng, slow_pass=1 if i == 0 else None)
               for i, w in enumerate([0.2, 0.8] * 12)]
    fit = fit_kind(kernels)
    assert fit["dropped_passes"] >= 1
    assert fit["compute"] == pytest.approx([0.5, 0.5], abs=0.05)


def test_a_linears_two_references_are_fitted_together():
    rng = random.Random(4)
    kernels = [entries_of(w, lambda w: w, 3, rng, v=1 - w, stream=lambda w: 0.6 * (1 - w))
               for w in (0.1, 0.5, 0.9) for _ in range(10)]
    fit = fit_kind(kernels)
    assert fit["compute"] == pytest.approx([1.0, 0.0], abs=0.05)  # the rule's, which is true here
    assert fit["weight_stream"] == pytest.approx([0.0, 0.6], abs=0.05)  # the rule says 1.0 for b
    fitted = {"linear": fit}
    assert exponents("linear", 0.1, 0.9, fitted) == pytest.approx((0.1, 0.54), abs=0.05)


def test_a_kind_with_too_few_passes_keeps_the_rule():
    rng = random.Random(5)
    few = [entries_of(0.5, lambda w: 0.2, 2, rng) for _ in range(MIN_OBSERVATIONS - 1)]
    assert fit_exponents({"softmax": few}) == {}
    assert exponents("softmax", 0.3, 0.0, {}) == (0.3, 0.0)
    assert exponents("linear", 0.3, 0.7, None) == (0.3, 0.7)
    # An exponent outside [0, 1] is clamped: a kernel does not slow more than the reference it follows.
    assert exponent([1.5, 0.0], 1.0) == 1.0 and exponent([0.0, -0.2], 0.0) == 0.0


def test_a_profile_states_its_passes_with_the_fitted_exponents(monkeypatch):
    from calibration.fingerprint import fingerprint
    from calibration.run import build_profile
    from emulator.cost.profile import shape_to_json
    from emulator.devices import device
    from emulator.shapes import Softmax

    # 24 softmax kernels, 3 passes each, on a machine that slows them by the compute reading to the 0.5
    # whatever their share w: restated with the fitted exponents, a kernel's passes agree.
    rng = random.Random(6)
    done = {"host": {"s_per_kernel": 1e-6}}
    for i in range(24):
        shape, w = Softmax(64 * (i + 1), 64), 0.1 + 0.8 * (i % 2)
        for p, entry in enumerate(entries_of(w, lambda w: 0.5, 3, rng)):
            done[f"{p}|softmax|{i}"] = {**entry, "pass": p, "kind": "softmax", "shape": shape_to_json(shape),
                                        "min_s": entry["median_s"], "spread": 0.0, "repeats": 5, "rejected": 0,
                                        "backend": "torch", "buffers": 1, "wall_s": 0.1,
                                        "stream_reference_s": STREAM_BASELINE_S}
    def pass_ratios(profile) -> list[float]:
        return [max(p["pass_medians_s"]) / min(p["pass_medians_s"]) for p in profile["kinds"]["softmax"]["points"]]

    profile = build_profile("cpu", "fp32", fingerprint("cpu"), done, [], True, [], "cpu", 3, device("cpu"))
    assert profile["drift_exponents"]["softmax"]["compute"] == pytest.approx([0.5, 0.5], abs=0.03)
    assert max(pass_ratios(profile)) < 1.02
    # With the rule's exponents (w = 0.1 or 0.9, 0.4 off) the passes keep the drifts to the power 0.4.
    monkeypatch.setattr("calibration.run.fit_exponents", lambda kernels: {})
    rule = build_profile("cpu", "fp32", fingerprint("cpu"), done, [], True, [], "cpu", 3, device("cpu"))
    assert "drift_exponents" not in rule and statistics.median(pass_ratios(rule)) > 1.05
