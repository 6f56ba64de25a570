"""A measured kernel's time pooled with its neighbours', each weighed by how far it can be trusted.

On a shared CPU one calibration pass of a kernel wanders by 7-25% (log
standard deviation of pass medians about their kernel's mean, per kind), about
as far as the plane through its neighbours misses it. A profile entry that
is the median of two passes is then no better an estimate of the kernel's time
than its neighbours are, and the best estimate takes both, by inverse
variance. For each kind whose points carry pass medians:

    pass variance      s_p^2 = sum_i sum_j (log t_ij - mean_i)^2 / sum_i (n_i - 1)
    interpolation      l_i   = the local plane at point i through the other points (leave one out)
    its variance       s_l^2 = max(mean_i (r_i - l_i)^2 - s_p^2 * mean_i (1 / n_i), FLOOR_VARIANCE)
    pooled residual    r_i  <- w_i r_i + (1 - w_i) l_i,   w_i = s_l^2 / (s_l^2 + s_p^2 / n_i)

r_i is the log ratio of point i's median over its n_i passes to the curve.
Only a measured shape's own prediction is pooled: between points the plane
goes through the entries as measured (emulator/cost/predictor.py).

The test is `python -m calibration report`: it takes every multi-pass kernel's
first pass, as measured and pooled at the weight one pass gets, and holds it
against the median of the kernel's other passes. On the development VM's CPU
profile (2026-11-26, 1,061 kernels) the pooled pass missed by 5.2% / 17.0%
(median / p90 over all kinds) against 6.6% / 24.4% as measured; linear
4.4% / 10.8% against 6.4% / 15.0%, group norm 6.1% / 17.1% against
11.6% / 43.4%. Pooled, conv3d's median went from 4.8% to 7.8% and
elementwise's from 9.9% to 11.5%, their p90 down. (The variances come from
the whole profile, the kernel's other passes included: a small leak.)
Profiles of one pass per kernel (the GPU ones) have no pass variance and are
used as measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

# The plane through neighbours is never taken as exact: at least a 1% (log) miss.
FLOOR_VARIANCE = 0.01**2


@dataclass(frozen=True)
class Pooling:
    pass_sd: float  # one pass's log standard deviation about its kernel's mean
    interpolation_sd: float  # the neighbours' plane's, net of the entries' own noise
    weights: np.ndarray  # [N] the measurement's weight per point; 1 - w goes to its neighbours
    left_out: np.ndarray  # [N] the neighbours' log correction at each point, the point left out

    def one_pass_weight(self) -> float:
        """The weight a single pass's measurement would get."""
        s_l2 = self.interpolation_sd**2
        return s_l2 / (s_l2 + self.pass_sd**2)


def pass_variance(pass_logs: Sequence[np.ndarray]) -> float | None:
    """Pooled within-kernel variance of log pass medians; None where no kernel has two passes."""
    squares = sum(float(((p - p.mean()) ** 2).sum()) for p in pass_logs if len(p) >= 2)
    dof = sum(len(p) - 1 for p in pass_logs if len(p) >= 2)
    return squares / dof if dof else None


def pool(residual: np.ndarray, pass_seconds: Sequence[Sequence[float]],
         left_out: np.ndarray) -> tuple[np.ndarray, Pooling | None]:
    """The pooled residuals [N], and how they were weighed (None: as measured, no pass has a twin).

    residual: [N] log(median / curve) per point; pass_seconds: the pass medians of each point;
    left_out: [N] the neighbours' log correction at each point, the point itself left out.
    """
    pass_logs = [np.log(np.asarray(p, float)) for p in pass_seconds]
    s_p2 = pass_variance(pass_logs)
    if s_p2 is None or len(residual) < 2:
        return residual, None
    n = np.array([max(len(p), 1) for p in pass_logs], float)  # [N]
    s_l2 = max(float(np.mean((residual - left_out) ** 2)) - s_p2 * float(np.mean(1.0 / n)), FLOOR_VARIANCE)
    w = s_l2 / (s_l2 + s_p2 / n)
    return w * residual + (1.0 - w) * left_out, Pooling(float(np.sqrt(s_p2)), float(np.sqrt(s_l2)), w, left_out)
