"""A measured kernel's time pooled with its neighbours', each weighed by how far it can be trusted.

Where a machine's speed wanders between passes, one pass of a kernel can miss
its true time about as far as the plane through its neighbours misses it, and
the best estimate of the kernel's time takes both, by inverse variance. For
each kind whose kernels were measured in several passes:

    pass variance      s_p^2 = sum_i sum_j (log t_ij - mean_i)^2 / sum_i (n_i - 1)
    interpolation      l_i   = the local plane at point i through the other points (leave one out)
    its variance       s_l^2 = max(mean_i (r_i - l_i)^2 - s_p^2 * mean_i (1 / n_i), FLOOR_VARIANCE)
    pooled residual    r_i  <- w_i r_i + (1 - w_i) l_i,   w_i = s_l^2 / (s_l^2 + s_p^2 / n_i)

r_i is the log ratio of point i's median over its n_i passes to the kind's
fitted curve. The pooled residuals become the profile's seconds when the
profile is written; the emulator reads them as they are. Kinds measured in one
pass per kernel (a GPU's, whose clock holds steady) have no pass variance and
keep their medians. `python -m calibration report` tests the pooling on the
raw passes kept beside the profile.
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


def pooled_seconds(predictor, medians: Sequence[float],
                   pass_seconds: Sequence[Sequence[float]]) -> tuple[list[float], Pooling | None]:
    """A kind's points' seconds pooled with their neighbours, and how (None: kept as measured).

    predictor: the kind's KindPredictor fitted to `medians` [N]; pass_seconds: each point's pass medians.
    """
    residual = predictor.residual  # [N] log(median / curve)
    if len(residual) < 2:  # a lone point has no neighbours to pool with
        return list(medians), None
    pooled, pooling = pool(residual, pass_seconds, predictor.left_out_corrections())
    return [float(m * np.exp(p - r)) for m, p, r in zip(medians, pooled, residual)], pooling
