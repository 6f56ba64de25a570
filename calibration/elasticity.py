"""How much each kernel kind's times follow the drift references, fitted from a calibration run's own passes.

calibration/drift.py rescales a batch of samples by each reference's drift to a
power, its exponent. The rule takes the exponents from the roofline: w, the
kernel's compute share, for the compute reference; v = 1 - w for a linear's
weight-stream reference, 0 for any other kind's. Pooled over the passes of a
development-VM run of 2026-11-26, the rule cut the log spread of the linears'
pass medians from 0.171 to 0.097 and of conv2d's from 0.164 to 0.119, but it
over-applied to conv1d (fitted elasticity 0.38 against a mean w of 0.85) and
conv3d (0.57 against 0.92), and memory-bound kinds followed the compute
reference at 0.22-0.48 where the rule gives them 0.00-0.14.

So the exponents are fitted per kind, keeping the rule's shape: a kernel of
compute share w follows a reference with exponent

    e(w) = a * w + b * (1 - w)          (clamped to [0, 1])

the rule being a = 1, b = 0 for the compute reference and a = 0, b = 1 for the
weight-stream one: a is how the compute-bound part of a kernel's time follows
the reference, b the memory-bound part. Every kernel measured in two or more
passes contributes its passes: the log of each pass's raw median (the
per-batch rescaling undone), less the kernel's mean over its passes, against
the logs of the references' readings in that pass, less theirs. Least squares
over a kind's kernels fits (a, b) per reference, ridge-pulled toward the rule
so that a direction the data barely hold (the split of e between a and b
when all of a kind's kernels have about one w) stays at the rule; a pass
further out than four robust standard deviations of the residuals (a
neighbour's burst during it) is dropped and the fit repeated.

Since each kernel's passes are taken against their own mean, the fit says how a
kernel's time follows the references' fluctuations, not how its mean reading
relates to the run's median (which also depends on what ran before the
reference). The profile keeps the rule for that level and uses the fit for
the fluctuations (calibration/drift.py, `fluctuation`).
"""

from __future__ import annotations

import math

import numpy as np

# A kind needs this many passes beyond each kernel's first to be fitted; fewer keep the rule.
MIN_OBSERVATIONS = 20
# The ridge's weight, as a share of the regressors' mean sum of squares: a direction the data hold 100
# times less than the average one is pulled halfway back to the rule, one held half as well by 2%.
RIDGE = 0.01
# A pass is an outlier beyond this many robust standard deviations of the residuals, never within 4%
# of the fit: a timer's and a reference's noise on a quiet machine is about 1%.
OUTLIER_SIGMAS = 4.0
MIN_RESIDUAL_SCALE = 0.01
RULE = {"compute": (1.0, 0.0), "weight_stream": (0.0, 1.0)}  # (a, b) of e(w) = a w + b (1 - w)


def exponent(coefficients: tuple[float, float], w: float) -> float:
    a, b = coefficients
    return min(1.0, max(0.0, a * w + b * (1.0 - w)))


def exponents(kind: str, w: float, v: float, fitted: dict | None) -> tuple[float, float]:
    """(compute, weight-stream) exponents of a kernel of `kind` with rule shares (w, v): fitted, or the rule's.

    The weight-stream reference applies only where the rule gives it a share (v > 0: a linear).
    """
    fit = (fitted or {}).get(kind)
    if not fit:
        return w, v
    stream = exponent(fit["weight_stream"], w) if v > 0 and "weight_stream" in fit else v
    return exponent(fit["compute"], w), stream


def _passes(kernels: list[list[dict]]):
    """Per pass of every kernel measured in two or more: its kernel's index, the log of its raw median,
    the logs of the references' readings (stream: NaN where not read) and the kernel's rule share w."""
    rows = []
    for index, entries in enumerate(kernels):
        entries = [e for e in entries if "compute_drift" in e and "error" not in e]
        if len(entries) < 2:
            continue
        streams = all("stream_drift" in e for e in entries)
        for e in entries:
            raw = math.log(e["median_s"]) + e["compute_share"] * math.log(e["compute_drift"]) \
                + e.get("stream_share", 0.0) * math.log(e.get("stream_drift", 1.0))  # the rule undone
            stream = math.log(e["stream_drift"] * e["stream_reference_s"]) if streams else math.nan
            rows.append((index, raw, math.log(e["compute_drift"] * e["compute_reference_s"]), stream,
                         e["compute_share"]))
    return np.array(rows).reshape(-1, 5).T


def _demeaned(values, kernel, keep):
    """values less their kernel's mean over its kept passes (only the kept passes are used after)."""
    out = values.copy()
    for k in np.unique(kernel[keep]):
        mine = kernel == k
        out[mine] -= values[mine & keep].mean()
    return out


def fit_kind(kernels: list[list[dict]]) -> dict | None:
    """The fitted coefficients of one kind from its kernels' entries (one per pass), or None if too few passes."""
    kernel, raw, compute, stream, w = _passes(kernels)
    streams = bool(np.isfinite(stream).any())
    stream = np.nan_to_num(stream)  # a kernel without stream readings: no stream term
    prior = np.array(RULE["compute"] + (RULE["weight_stream"] if streams else ()))

    def fit(keep):
        y, c, s = (_demeaned(v, kernel, keep)[keep] for v in (raw, compute, stream))
        # log raw = e_c(w) log r_c + e_s(w) log r_s = a_c w log r_c + b_c (1 - w) log r_c + ...
        x = np.column_stack([w[keep] * c, (1 - w[keep]) * c] + ([w[keep] * s, (1 - w[keep]) * s] if streams else []))
        return y, x, _ridge(x, y, prior)

    def observations(keep) -> int:  # passes beyond each kernel's first: what the demeaned passes hold
        counts = np.unique(kernel[keep], return_counts=True)[1]
        return int((counts[counts >= 2] - 1).sum())

    everything = np.ones(len(raw), dtype=bool)
    if observations(everything) < MIN_OBSERVATIONS:
        return None
    y, x, theta = fit(everything)
    residual = y - x @ theta
    scale = 1.4826 * np.median(np.abs(residual - np.median(residual)))  # a robust standard deviation
    keep = np.abs(residual) <= OUTLIER_SIGMAS * max(scale, MIN_RESIDUAL_SCALE)
    y, x, theta = fit(keep)  # again without the outlying passes, each kernel's mean without them too
    result = {"compute": [round(float(theta[0]), 4), round(float(theta[1]), 4)],
              "observations": observations(keep), "dropped_passes": int((~keep).sum()),
              "log_spread": {"raw": _spread(y), "rule": _spread(y - x @ prior), "fitted": _spread(y - x @ theta)}}
    if streams:
        result["weight_stream"] = [round(float(theta[2]), 4), round(float(theta[3]), 4)]
    return result


def _ridge(x, y, prior):
    """argmin |y - x theta|^2 + lambda |theta - prior|^2, lambda RIDGE times the mean of x's column sums of squares."""
    gram = x.T @ x
    lam = RIDGE * np.trace(gram) / len(prior)
    return prior + np.linalg.solve(gram + lam * np.eye(len(prior)), x.T @ (y - x @ prior))


def _spread(residual) -> float:
    return round(float(np.std(residual)), 4)


def fit_exponents(kernels_by_kind: dict[str, list[list[dict]]]) -> dict:
    """{kind: fitted coefficients} for the kinds with enough passes; kinds left out keep the rule."""
    fitted = {}
    for kind, kernels in sorted(kernels_by_kind.items()):
        fit = fit_kind(kernels)
        if fit:
            fitted[kind] = fit
    return fitted
