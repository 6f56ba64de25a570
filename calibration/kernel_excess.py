"""How much launch cost a profile's kernel times carry, against a profile timed by CUDA-graph replay.

The project's convention: a kernel's time is its device execution time in a
back-to-back replay, launch excluded (calibration/timers.py); the launch is the
host model's (a profile's "host" section, emulator/cost/runtime.py). A profile
timed otherwise (each kernel alone between CUDA events) carries an excess per
kernel. `kernel_excess` estimates it from two profiles of the same device:

1. pairs: the points of one kind measured in both at the same shape, the
   shapes' `bias` aside; the first profile's point of the second's bias where
   it has one, else its other one (pairs_other_bias counts those);
2. a bias correction: where the first profile holds both biases at a shape
   (launch-bound ones), the median of (with - without) is the bias's own cost;
   it is taken off the first profile's time of each pair of the other bias;
3. the launch-bound pairs: datasheet roofline at most `share` of the
   reference time, and the reference time at most `max_reference_s`: there the
   work is small against the fixed costs, and what remains is per kernel;
4. figures over those pairs: excess = first - reference (median, quartiles,
   range), and whether it is constant (the excess varies less, relatively,
   than the ratio does) or proportional (the ratio varies less). The median is
   what the first profile's host section should declare as
   host[RECOMMENDED_FIELD].
"""

from __future__ import annotations

import statistics

import numpy as np

from emulator.devices import device as catalog_device
from emulator.ops import Op

RECOMMENDED_FIELD = "s_per_kernel_in_kernel_times"


def point_seconds(point: dict) -> float:
    """A point's time as measured (its median over passes where pooling moved `seconds`)."""
    return float(point.get("median_s", point["seconds"]))


def by_shape(profile: dict, kind: str) -> dict[tuple, dict[bool, float]]:
    """{shape without bias (sorted items): {bias: seconds}} of a profile's points of one kind."""
    out: dict[tuple, dict[bool, float]] = {}
    for p in profile["kinds"].get(kind, {}).get("points", []):
        shape = dict(p["shape"])
        bias = bool(shape.pop("bias", False))
        out.setdefault(tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in shape.items())),
                       {})[bias] = point_seconds(p)
    return out


def roofline_s(kind: str, key: tuple, dtype: str, dev) -> float:
    """The datasheet roofline time of a shape (bias-free): max(FLOPs / peak, bytes / bandwidth)."""
    from emulator.cost.profile import shape_from_json

    fields = dict(key)
    if "bias" in shape_from_json(kind, fields).__dataclass_fields__:
        fields["bias"] = False
    op = Op("", shape_from_json(kind, fields), dtype)
    return max(op.flops / dev.peak_flops_per_s(op), op.bytes / dev.bytes_per_s)


def bias_cost_s(ours: dict[tuple, dict[bool, float]], launch_bound) -> float:
    """Median (with bias - without) over launch-bound shapes measured both ways; 0 if none."""
    diffs = [t[True] - t[False] for key, t in ours.items() if len(t) == 2 and launch_bound(key, t[False])]
    return statistics.median(diffs) if diffs else 0.0


def pairs(ours: dict, reference: dict, bias_s: float) -> list[tuple[tuple, float, float, bool]]:
    """(shape, our seconds bias-corrected, reference seconds, whether our bias differs) per shared shape."""
    out = []
    for key, ref in reference.items():
        if key not in ours:
            continue
        ref_bias, ref_s = next(iter(ref.items()))
        mine = ours[key]
        if ref_bias in mine:
            out.append((key, mine[ref_bias], ref_s, False))
        else:
            out.append((key, mine[not ref_bias] - (bias_s if ref_bias is False else -bias_s), ref_s, True))
    return out


def summary(excess: np.ndarray, reference: np.ndarray) -> dict:
    """Figures of the excess [N] (seconds) against the reference times [N]."""
    q25, med, q75 = np.quantile(excess, [0.25, 0.5, 0.75])
    ratio = (reference + excess) / reference - 1.0  # [N] the excess as a share of the reference
    r25, rmed, r75 = np.quantile(ratio, [0.25, 0.5, 0.75])
    spread_abs = float((q75 - q25) / abs(med)) if med else float("inf")
    spread_rel = float((r75 - r25) / abs(rmed)) if rmed else float("inf")
    slope, intercept = np.polyfit(reference, excess, 1) if len(excess) > 1 else (0.0, float(med))  # s per s, s
    return {"n": int(len(excess)), "median_s": float(med), "q25_s": float(q25), "q75_s": float(q75),
            "min_s": float(excess.min()), "max_s": float(excess.max()),
            "median_ratio": float(rmed + 1.0), "iqr_over_median_excess": spread_abs,
            "iqr_over_median_ratio": spread_rel, "slope": float(slope),
            "intercept_s": float(intercept),
            "shape": "constant" if spread_abs < spread_rel else "proportional"}


def kernel_excess(ours: dict, reference: dict, kind: str = "linear", share: float = 0.5,
                  max_reference_s: float = 20e-6, correct_bias: bool = True) -> dict:
    """The per-kernel excess of `ours` over `reference` (both profile dicts of one device) at one kind's
    launch-bound shapes: figures (summary), the pairs, how they were made, and the host field to declare.
    correct_bias=False leaves a pair of the other bias as measured."""
    dev = catalog_device(ours["device"])
    dtype = ours["dtype"]

    def launch_bound(key: tuple, seconds: float) -> bool:
        return seconds <= max_reference_s and roofline_s(kind, key, dtype, dev) <= share * seconds

    mine, ref = by_shape(ours, kind), by_shape(reference, kind)
    bias_s = bias_cost_s(mine, launch_bound) if correct_bias else 0.0
    matched = pairs(mine, ref, bias_s)
    chosen = [p for p in matched if launch_bound(p[0], p[2])]
    if not chosen:
        raise ValueError(f"no launch-bound {kind} shape is in both profiles")
    excess = np.array([o - r for _, o, r, _ in chosen])  # [N]
    reference_s = np.array([r for _, _, r, _ in chosen])  # [N]
    return {**summary(excess, reference_s), "kind": kind, "pairs_shared": len(matched),
            "pairs_other_bias": sum(p[3] for p in chosen), "bias_cost_s": bias_s,
            "launch_bound": f"roofline <= {share:g} x reference time, reference <= {max_reference_s * 1e6:g} us",
            "pairs": [{"shape": dict(key), "ours_s": o, "reference_s": r, "other_bias": other}
                      for key, o, r, other in chosen],
            "recommend": {RECOMMENDED_FIELD: float(np.median(excess))}}
