"""Kernel-time predictor of one kernel kind, fitted to measured points.

Method (the same for every kind):
1. A roofline-shaped curve with fitted constants,
       t = overhead + smoothmax(idle x FLOPs / flops_per_s, idle x memory time(bytes),
                                items x s_per_item),
   smoothmax(a, b, c) = (a^4 + b^4 + c^4)^(1/4), the memory time at a cache
   bandwidth below a cache threshold and at a memory bandwidth above it, fitted
   by least squares on log time (robust loss, rates bounded by the datasheet,
   the threshold within 4x of the device's last-level cache) to all measured
   points of the kind. It captures the trend: launch-bound tiny kernels, cache-,
   memory- and compute-bound regimes. Fused attention kinds have work items
   (thread blocks: batch x heads x query tiles, `work_items`), each with a
   cost of its own that FLOPs and bytes do not show (a decode step of 2048 x 8
   sequence-heads moves 25 MB, 12 us at an A100's bandwidth, and took 519 us),
   and run the device at the share min(1, items / fill_items) of its rates,
   smoothed: idle = smoothmax(1, fill_items / items). Other kinds have neither
   term.
2. A correction for what the curve misses (tile quantization, library kernel
   choices): the log ratio measured / curve at the measured points,
   interpolated at a new shape by a weighted local-linear fit (a plane, weights
   1 / squared distance) over its 2D + 2 nearest measured neighbours in the
   space of D log shape features, kept within the neighbours' range widened by
   25%; a feature all the neighbours share has no slope (the plane is read at
   their value of it; a query elsewhere in it is farther from them). The plane
   goes through the points as measured (their medians over passes); at a
   measured shape the prediction is the profile's entry, which for a noisy
   device is that median pooled with the neighbours' plane
   (calibration/pooling.py): the best estimate at the shape, while the plane
   through the raw medians predicts the shapes between them better.

The shape features are a named set per kind (FEATURE_SETS): the profile says
which set each kind was fitted in, since libraries differ by device (a CPU's
convolutions loop over images, and it adds a linear's bias at no cost of its
own; a GPU's convolutions run as one implicit GEMM, and a biased GEMM is
another kernel than a bias-free one).

The correction is trusted only near measured shapes. A kind's spacing is the
95th percentile, over its points, of the distance from a point to its nearest
other point (in log features). Up to one spacing from the nearest measured
shape the correction applies in full; from one to two spacings it fades
linearly to nothing; beyond two the prediction is the curve alone, and the
shape is outside the kind's calibrated domain: cost models count it as a
fallback. (A box around the points would call a shape covered that is far
from every one of them, and let a plane through distant neighbours multiply
the curve several times over.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from math import prod
from typing import Callable, Sequence

import numpy as np

from emulator.cost.kernels import ATTENTION_KINDS, attention_of_kind, work
from emulator.ops import Op
from emulator.shapes import ELEMENTWISE_FLOPS_PER_ELEMENT

SMOOTHNESS = 4.0
RIDGE = 1e-3  # regularizes the local plane where neighbours are nearly collinear
WEIGHT_FLOOR = 1e-3  # squared log-distance added before inverting, so no neighbour dominates alone
CLIP = math.log(1.25)
SPACING_QUANTILE = 0.95
LONE_POINT_SPACING = math.log(2.0)  # a kind measured at one shape trusts it within a factor of 2
SPACING_BLOCK = 512  # rows of the pairwise-distance matrix held at once: profiles have thousands of points


def _conv(s) -> tuple:
    # Implicit GEMM: M = output positions, K = reduction per output, N = output channels.
    return (s.batch * prod(s.out_size), s.c_in // s.groups * prod(s.kernel), s.c_out, s.stride)


def _attention(s) -> tuple:
    return (s.batch * s.heads, s.q_len, s.kv_len, s.head_dim, 2 if s.causal else 1)


def _attention_gqa(s) -> tuple:
    # Grouped-query attention moves 1 / group of the K/V bytes of multi-head attention with the same FLOPs,
    # and fused kernels pack a group's query heads into one block: the group (query heads per K/V head) is
    # a feature of its own. An MHA shape's group is 1, log 0: its other features are those of `attention`.
    return _attention(s) + (s.group,)


# BLAS libraries run a one-row product as a matrix-vector kernel (GEMV), a memory stream with no tiling,
# and switch to a tiled GEMM from two rows on: a step in time no plane in log m follows. A feature of its
# own, e^2 apart, lets the neighbours' plane take the step.
GEMV_FEATURE = math.exp(2.0)


# On a GPU a bias is another kernel (cuBLASLt's bias epilogue): the measured H100's bias=True GEMMs take
# 1.0-1.7x the time of bias-free ones of the same m, k, n (1.28x at 8192 x 320 x 320, 1.71x at 622592 x 320
# x 320). A feature of its own, e^2 apart: a bias-free shape finds bias-free neighbours where the profile
# has them (the plane takes the step where both are near) and is two log units from the others, where the
# correction fades and the calibrated domain ends in a profile spaced a unit or less.
BIAS_FEATURE = math.exp(2.0)


def _linear(s) -> tuple:
    return (s.m, s.k, s.n, GEMV_FEATURE if s.m == 1 else 1.0, BIAS_FEATURE if s.bias else 1.0)


def _linear_fused_bias(s) -> tuple:
    # CPU libraries add the bias in the GEMM at no measurable cost (the CPU profile's bias=True GEMMs take
    # 0.94-1.15x the bias-free time): bias-free and bias=True shapes are neighbours alike.
    return (s.m, s.k, s.n, GEMV_FEATURE if s.m == 1 else 1.0)


# PyTorch runs an fp32 conv on a CPU through oneDNN, except for one small image, which it runs through its
# own im2col + GEMM: batch 1, no groups, not both of the kernel's last two sides above 3, and at most 20480
# elements in the input's first four dims (`use_mkldnn` in ATen's Convolution.cpp, with more than one
# thread). A conv1d runs as a conv2d of height 1, so that is all its input; a conv3d's [N, C, D, H] leaves
# out its width. Two libraries with different costs on either side of a line: a feature of its own.
NATIVE_CONV_MAX_INPUT_ELEMENTS = 20480
NATIVE_CONV_FEATURE = math.exp(2.0)


def native_cpu_conv(s) -> bool:
    """Whether PyTorch runs this fp32 CPU conv with its own im2col + GEMM rather than oneDNN."""
    last_two_kernel_sides = ((1,) + s.kernel)[-2:]  # a conv1d's kernel is [1, k]
    return (s.batch == 1 and s.groups == 1 and min(last_two_kernel_sides) <= 3
            and s.c_in * prod(s.size[:2]) <= NATIVE_CONV_MAX_INPUT_ELEMENTS)


def _conv_per_image(s) -> tuple:
    # CPU libraries loop over images: the batch is a feature of its own beside the implicit GEMM.
    return (s.batch,) + _conv(s) + (NATIVE_CONV_FEATURE if native_cpu_conv(s) else 1.0,)


def _conv3d_per_frame(s) -> tuple:
    # oneDNN works a (k, 1, 1) conv3d plane by plane: frames and plane size are features of their own.
    return (s.out_size[0], s.batch * prod(s.out_size[1:]), s.c_in // s.groups * prod(s.kernel), s.c_out,
            NATIVE_CONV_FEATURE if native_cpu_conv(s) else 1.0)


# Named feature sets: each maps a shape to the positive numbers whose logs place it among its neighbours.
# A profile names the set each kind was fitted in, so that the same predictor serves every device.
FEATURE_SETS: dict[str, Callable[[object], tuple]] = {
    "linear": _linear,
    "linear-fused-bias": _linear_fused_bias,  # CPU libraries: the bias costs nothing of its own
    "matmul": lambda s: (s.batch, s.m, s.k, s.n),
    "conv": _conv,
    "conv-per-image": _conv_per_image,  # CPU libraries: a loop over images, PyTorch's own small-image path
    "conv3d-per-frame": _conv3d_per_frame,  # CPU libraries: a temporal conv3d plane by plane
    "attention": _attention,  # profiles of multi-head attention only
    "attention-gqa": _attention_gqa,  # the group size besides: profiles with grouped-query points
    # Group norm parallelizes over (sample, group) rows: their number shapes its time as much as the size.
    "group_norm": lambda s: (s.elements, s.batch * s.groups, s.channels),
    "norm": lambda s: (s.elements, s.channels),
    "softmax": lambda s: (s.rows, s.cols),
    # The op (copy, add, silu, gelu, ...) matters beyond its bytes: its arithmetic per element tells them
    # apart; a layout change (copy) reads with strides where a memcpy streams.
    "elementwise": lambda s: (s.elements, s.inputs + 1, ELEMENTWISE_FLOPS_PER_ELEMENT[s.op] + 1,
                              2 if s.op == "copy" else 1),
    "resample": lambda s: (s.input_elements, s.factor, 2 if s.direction == "up" else 1),
    "embedding": lambda s: (s.tokens, s.dim),
}
# The feature set of each kernel kind unless a profile names another.
DEFAULT_FEATURES: dict[str, str] = {
    "linear": "linear", "matmul": "matmul", "conv2d": "conv", "conv1d": "conv", "conv3d": "conv",
    **{kind: "attention-gqa" for kind in ATTENTION_KINDS}, "group_norm": "group_norm",
    "layer_norm": "norm", "rms_norm": "norm", "softmax": "softmax", "elementwise": "elementwise",
    "resample": "resample", "embedding": "embedding",
}
KINDS = tuple(DEFAULT_FEATURES)


def log_features(features: str, shape) -> np.ndarray:
    """The log shape features of a named feature set: the space neighbours are found in."""
    return np.log(np.asarray(FEATURE_SETS[features](shape), dtype=float))


def shape_work(kind: str, dtype: str, shape) -> tuple[int, int]:
    """(FLOPs, bytes) of one kernel of this kind (baseline attention: its three kernels)."""
    return work(Op("", shape, dtype), attention_of_kind(kind))


# Fused attention kernels give each (sequence, K/V head) and tile of QUERY_TILE query rows a thread block of
# its own; with grouped-query attention a K/V head's group of query heads is packed into its rows
# (FlashAttention's pack-GQA, and its decode path that swaps the group into the query length).
QUERY_TILE = 128


def work_items(kind: str, shape) -> int:
    """The work items (thread blocks) of one kernel whose count costs time of its own: a fused attention
    kernel's batch x kv_heads x ceil(group x q_len / QUERY_TILE) query tiles (multi-head: batch x heads x
    ceil(q_len / QUERY_TILE)); 0 for every other kind, baseline attention's three kernels (batched matmuls
    and a softmax, tiled otherwise) included: no item term."""
    if kind not in ATTENTION_KINDS or attention_of_kind(kind) == "baseline":
        return 0
    return shape.batch * shape.key_value_heads * -(-shape.group * shape.q_len // QUERY_TILE)


@dataclass(frozen=True)
class Curve:
    """The fitted roofline-shaped curve of one kind.

    t = overhead_s + smoothmax(idle * FLOPs / flops_per_s, idle * memory time(bytes), items * s_per_item),
    idle = smoothmax(1, fill_items / items). The item term is a cost per work item (work_items) that
    neither FLOPs nor bytes show: an A100's decode attention blocks of two cached positions take about
    31 ns each, forty times their bytes' time. Fewer items than `fill_items` leave part of the device
    idle: one decode block streams its cache at about 22 GB/s on an A100, a seventieth of the 1.5 TB/s
    its decode steps attain. Both 0 (the defaults): no item terms, the curve of kinds without work items.
    Memory time has two levels: a kernel whose bytes stay below `cache_bytes`
    streams at `cache_bytes_per_s`, a larger one at `bytes_per_s`, blended around
    the threshold over a width set by `cache_sharpness`. Both are fitted: what
    fits the cache depends on the kernel's passes over its data, not just its
    bytes, and a cliff can be sharper than a fixed blend follows.
    """

    flops_per_s: float
    bytes_per_s: float
    overhead_s: float
    cache_bytes: float = 0.0  # 0: a single memory level
    cache_bytes_per_s: float = 0.0
    cache_sharpness: float = 4.0  # exponent of the blend
    s_per_item: float = 0.0  # 0: no work-item term
    fill_items: float = 0.0  # work items that keep the whole device busy; 0: any number does

    def memory_time(self, nbytes):
        dram = nbytes / self.bytes_per_s
        if not self.cache_bytes:
            return dram
        in_cache = 1.0 / (1.0 + (nbytes / self.cache_bytes) ** self.cache_sharpness)  # 1 well inside, 0 beyond
        return (nbytes / self.cache_bytes_per_s) ** in_cache * dram ** (1.0 - in_cache)

    def __call__(self, flops, nbytes, items=0):
        a, b = flops / self.flops_per_s, self.memory_time(nbytes)
        if self.fill_items:  # fewer items than fill the device run at that fraction of its rates
            idle = (1.0 + (self.fill_items / np.maximum(items, 1)) ** SMOOTHNESS) ** (1 / SMOOTHNESS)
            a, b = a * idle, b * idle
        terms = a**SMOOTHNESS + b**SMOOTHNESS
        if self.s_per_item:
            terms = terms + (items * self.s_per_item) ** SMOOTHNESS
        return self.overhead_s + terms ** (1 / SMOOTHNESS)

    def asdict(self) -> dict:
        """The constants as a profile stores them (the item terms only where the curve has them)."""
        out = {"flops_per_s": self.flops_per_s, "bytes_per_s": self.bytes_per_s, "overhead_s": self.overhead_s,
               "cache_bytes": self.cache_bytes, "cache_bytes_per_s": self.cache_bytes_per_s,
               "cache_sharpness": self.cache_sharpness}
        return (out | ({"s_per_item": self.s_per_item} if self.s_per_item else {})
                | ({"fill_items": self.fill_items} if self.fill_items else {}))


def fit_curve(flops: Sequence[float], nbytes: Sequence[float], seconds: Sequence[float],
              max_flops_per_s: float = np.inf, max_bytes_per_s: float = np.inf,
              overhead_s: float | None = None, cache_bytes: float = 0.0,
              items: Sequence[float] | None = None) -> Curve:
    """Least-squares fit of the curve on log time (soft-L1 loss against outliers).

    The rates are bounded by the device's peaks (a kernel cannot beat its
    datasheet; the cache level up to 50x that) and the overhead by the fastest
    measurement; `overhead_s` fixes the overhead where the points cannot tell it
    (all of them large kernels). With a `cache_bytes` (the device's last-level
    cache) the threshold is fitted within 4x of it and the blend's sharpness
    between 2 and 16, from three starting thresholds (the fit is not convex in it).
    With `items` (work items per point, some positive) the cost per item is
    fitted, at most the least time per item of any point and down to a millionth
    of that (no item cost), and the items that fill the device between 0.001
    (none: any number does) and 1e5; without, or with `overhead_s` given (points
    that cannot tell a floor cannot tell a cost per block either: fitted, it
    stood in for the floor), the curve has no item terms.
    """
    from scipy.optimize import least_squares  # fitting only: prediction needs no scipy

    f = np.maximum(np.asarray(flops, float), 0.0)  # [N]
    b = np.asarray(nbytes, float)  # [N]
    t = np.asarray(seconds, float)  # [N]
    n = np.zeros_like(t) if items is None else np.asarray(items, float)  # [N]
    lo, hi, x0 = curve_bounds(f, b, t, n, max_flops_per_s, max_bytes_per_s, overhead_s, cache_bytes)

    def curve(x) -> Curve:
        p, w, o, g, c, k = np.exp(x[:6])
        i, fill = (float(v) for v in np.exp(x[6:])) if len(x) > 6 else (0.0, 0.0)
        if not cache_bytes:
            return Curve(float(p), float(w), float(o), s_per_item=i, fill_items=fill)
        return Curve(float(p), float(w), float(o), float(c), float(w * g), float(k), i, fill)

    def residual(x):
        return np.log(curve(x)(f, b, n)) - np.log(t)

    best = None
    for start in ((0.5, 1.0, 2.0) if cache_bytes else (1.0,)):
        x = x0.copy()
        x[4] = np.clip(math.log((cache_bytes or 1.0) * start), lo[4] + 1e-9, hi[4] - 1e-9)
        sol = least_squares(residual, x, bounds=(lo, hi), loss="soft_l1", f_scale=0.1)
        if best is None or sol.cost < best.cost:
            best = sol
    return curve(best.x)


ITEM_RANGE = 1e6  # the item cost is fitted between a millionth of its bound and the bound


def curve_bounds(f, b, t, n, max_flops_per_s, max_bytes_per_s, overhead_s, cache_bytes) -> tuple:
    """(lo, hi, x0) of the fit's parameters x = log(flops_per_s, bytes_per_s, overhead_s, cache speed-up
    over memory, cache threshold, sharpness[, s_per_item, fill_items]), each [6], or [8] where some point
    has work items, from the points' FLOPs f, bytes b, seconds t and items n, each [N]; a parameter the
    points cannot tell is frozen (lo = hi). The fill starts at one item: where no point runs so few items
    that the device idles (large prefill kernels only) it stays there, and idles nothing it cannot see."""
    cache = cache_bytes or 1.0
    per_item = (t[n > 0] / n[n > 0]).min() if (n > 0).any() else 1.0  # no item costs more than this
    hi = np.array([math.log(max_flops_per_s), math.log(max_bytes_per_s), math.log(t.min()), math.log(50.0),
                   math.log(4 * cache), math.log(16.0), math.log(per_item), math.log(1e5)])
    lo = np.array([0.0, 0.0, math.log(1e-8), 0.0, math.log(cache / 4), math.log(2.0),
                   math.log(per_item / ITEM_RANGE), math.log(1e-3)])
    x0 = np.clip(np.log([max((f / t).max(), 1.0), (b / t).max(), t.min() / 2, 2.0, cache, 4.0, per_item / 10,
                         1.0]), lo + 1e-9, hi - 1e-9)
    frozen = np.zeros(8, bool)
    if overhead_s is not None:
        frozen[2], x0[2] = True, math.log(overhead_s)
    if not cache_bytes:  # a single memory level: the cache parameters are unused
        frozen[3:6] = True
    lo[frozen], hi[frozen] = x0[frozen] - 1e-9, x0[frozen] + 1e-9
    used = 8 if (n > 0).any() and overhead_s is None else 6  # no work items, or large kernels only: no item terms
    return lo[:used], hi[:used], x0[:used]


def curve_seconds(kind: str, dtype: str, curve: Curve, shape) -> float:
    """The curve's time for a shape of this kind."""
    return curve(*shape_work(kind, dtype, shape), work_items(kind, shape))


def neighbour_space(features: str, shapes: Sequence) -> str:
    """The feature set a kind's neighbours are found in: `attention-gqa` over multi-head points only is
    `attention`, its group column all 0 adding nothing but neighbours (2D + 2 of them), so that a profile
    without grouped-query points predicts exactly as before the group was a feature."""
    if features == "attention-gqa" and all(s.group == 1 for s in shapes):
        return "attention"
    return features


class KindPredictor:
    """Curve + nearest-neighbour correction for one kind, from measured (shape, seconds) points."""

    def __init__(self, kind: str, dtype: str, curve: Curve, shapes: Sequence, seconds: Sequence[float],
                 features: str | None = None, medians: Sequence[float] | None = None):
        """seconds: the prediction at each measured shape; medians: the measured medians the plane between
        shapes goes through, where they differ from `seconds` (default: seconds). features: the name of
        the feature set (FEATURE_SETS) neighbours are found in; the kind's default if None (`attention-gqa`
        over multi-head points only is `attention`: see neighbour_space)."""
        if not shapes:
            raise ValueError(f"{kind}: no measured points")
        self.kind, self.dtype, self.curve = kind, dtype, curve
        self.features = neighbour_space(features or DEFAULT_FEATURES[kind], shapes)
        self.x = np.stack([log_features(self.features, s) for s in shapes])  # [N, D]
        log_curve = np.log([self.curve_time(s) for s in shapes])  # [N]
        self.residual = np.log(np.asarray(seconds if medians is None else medians, float)) - log_curve  # [N]
        self.at_points = np.log(np.asarray(seconds, float)) - log_curve  # [N]
        self.spacing = spacing(self.x)

    def curve_time(self, shape) -> float:
        """The fitted curve alone: the calibrated roofline, used outside the measured domain."""
        return curve_seconds(self.kind, self.dtype, self.curve, shape)

    def nearest_distance(self, x: np.ndarray) -> float:
        """Distance from log features x [D] to the nearest measured shape."""
        return float(np.sqrt(((self.x - x) ** 2).sum(axis=1).min()))

    def covers(self, shape) -> bool:
        return self.nearest_distance(log_features(self.features, shape)) <= 2 * self.spacing

    def predict(self, shape) -> float:
        return self.curve_time(shape) * math.exp(self.correction(log_features(self.features, shape)))

    def correction(self, x: np.ndarray) -> float:
        """Log ratio measured / curve at x [D]: weighted local-linear fit over the nearest measured shapes,
        faded out from one to two spacings away from the nearest of them."""
        trust = min(1.0, max(0.0, 2.0 - self.nearest_distance(x) / self.spacing))
        if trust == 0.0:
            return 0.0
        return trust * float(local_corrections(self.x, self.residual, x[None, :], at_points=self.at_points)[0])

    def left_out_corrections(self) -> np.ndarray:
        """[N] the neighbours' log correction at each measured point, the point itself left out."""
        return local_corrections(self.x, self.residual, self.x, leave_out=np.arange(len(self.x)))


def spacing(xs: np.ndarray) -> float:
    """The SPACING_QUANTILE of the distances from each point of xs [N, D] to its nearest other point."""
    if len(xs) < 2:
        return LONE_POINT_SPACING
    norms = (xs**2).sum(axis=1)  # [N]
    nearest = np.empty(len(xs))  # [N]
    for start in range(0, len(xs), SPACING_BLOCK):  # |a - b|^2 = |a|^2 + |b|^2 - 2 a.b, a block of rows at a time
        block = xs[start:start + SPACING_BLOCK]  # [b, D]
        d2 = norms[start:start + SPACING_BLOCK, None] + norms[None, :] - 2.0 * block @ xs.T  # [b, N]
        d2[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf  # not a point's own distance
        other = xs[d2.argmin(axis=1)]  # [b, D] the nearest other point; its distance exactly, without the
        nearest[start:start + len(block)] = np.sqrt(((block - other) ** 2).sum(axis=1))  # expansion's rounding
    return max(float(np.quantile(nearest, SPACING_QUANTILE)), 1e-6)


def local_corrections(xs: np.ndarray, residual: np.ndarray, queries: np.ndarray,
                      leave_out: np.ndarray | None = None, at_points: np.ndarray | None = None) -> np.ndarray:
    """The plane through the nearest of the points xs [N, D] with log residuals [N], at each query [Q, D].

    leave_out [Q]: a point index per query to leave out of its neighbours (leave-one-out estimates);
    at_points [N]: what a query at a measured point gets (default: its residual).
    """
    d2 = ((xs[None, :, :] - queries[:, None, :]) ** 2).sum(axis=2)  # [Q, N]
    n, dims = xs.shape
    if leave_out is not None:
        d2[np.arange(len(queries)), leave_out] = np.inf
        n -= 1
    k = min(n, 2 * dims + 2)
    nearest = np.argsort(d2, axis=1)[:, :k]  # [Q, k]
    r = residual[nearest]  # [Q, k]
    near_d2 = np.take_along_axis(d2, nearest, axis=1)  # [Q, k]
    w = 1.0 / (near_d2 + WEIGHT_FLOOR)
    if k <= dims + 1:  # too few neighbours for a plane: weighted mean
        estimate = (w * r).sum(axis=1) / w.sum(axis=1)
    else:
        offsets = xs[nearest] - queries[:, None, :]  # [Q, k, D]
        # A feature all the neighbours share tells the plane nothing: the query's own value in it, where
        # it differs (a bias-free query among bias=True neighbours), would only scale the intercept down.
        offsets[np.broadcast_to(np.ptp(offsets, axis=1, keepdims=True) == 0, offsets.shape)] = 0.0
        a = np.concatenate([np.ones((len(queries), k, 1)), offsets], axis=2)  # [Q, k, 1 + D]
        aw = a.transpose(0, 2, 1) * w[:, None, :]  # [Q, 1 + D, k]
        beta = np.linalg.solve(aw @ a + RIDGE * np.eye(dims + 1), (aw @ r[:, :, None]))[:, 0, 0]  # [Q]
        # A plane fitted to noisy neighbours can overshoot away from them: stay near their range.
        estimate = np.clip(beta, r.min(axis=1) - CLIP, r.max(axis=1) + CLIP)
    exact = (residual if at_points is None else at_points)[nearest[:, 0]]
    return np.where(near_d2[:, 0] < 1e-18, exact, estimate)


def fit_predictor(kind: str, dtype: str, shapes: Sequence, seconds: Sequence[float], device=None,
                  overhead_s: float | None = None, features: str | None = None) -> KindPredictor:
    """Fit the curve to the points (rates bounded by `device`'s peaks, if given), then build the predictor."""
    fw = [shape_work(kind, dtype, s) for s in shapes]
    bounds = {}
    if device is not None:
        bounds = {"max_flops_per_s": device.peak_flops_per_s(Op("", shapes[0], dtype)),
                  "max_bytes_per_s": device.bytes_per_s, "cache_bytes": device.l2_MB * 1e6}
    curve = fit_curve([w[0] for w in fw], [w[1] for w in fw], seconds, overhead_s=overhead_s,
                      items=[work_items(kind, s) for s in shapes], **bounds)
    return KindPredictor(kind, dtype, curve, shapes, seconds, features)
