"""Kinds a device's public tables lack, from the measured H100 profile scaled to that device by a stated rule.

The public tables hold GEMMs and serving engines' fused attention only; a
diffusion model also runs convolutions, norms, elementwise kernels, resamples
and PyTorch's own attention kernels. Each such kind
keeps the shapes the H100 measured (calibration/profiles/h100-sxm.json), and
each shape's H100 time is scaled to the target device:

- GEMM-like kinds (batched matmul, convolutions as the implicit GEMM they
  lower to, unfused attention's matmuls, PyTorch's fused flash attention, a
  tiled matrix kernel too): by the ratio of the target's fitted
  `linear` curve to the H100's, both fitted to the same framework's public
  GEMM tables, at the shape's FLOPs and bytes;
- memory-bound kinds (norms, softmax, elementwise, resample, embedding): by
  the ratio of the H100's datasheet memory bandwidth to the target's.

The profile marks these kinds `transferred`, and `calibration report` leaves
them out of its measured summary.
"""

from __future__ import annotations

from emulator.cost.predictor import DEFAULT_FEATURES, Curve, curve_seconds, fit_predictor
from emulator.cost.profile import kernel_seconds, shape_from_json

GEMM_LIKE = ("matmul", "conv1d", "conv2d", "conv3d", "attention_baseline", "attention_flash")


def scaled_kinds(measured_h100: dict, target_linear: Curve, h100_linear: Curve, target, h100, dtype: str,
                 present: set[str]) -> dict:
    """Profile entries for the kinds of `measured_h100` (a loaded profile) that `present` lacks."""
    entries = {}
    for kind, entry in sorted(measured_h100["kinds"].items()):
        if kind in present or "source" in entry:  # the target has it, or the H100 did not measure it itself
            continue
        shapes = [shape_from_json(kind, p["shape"]) for p in entry["points"]]
        seconds = [t * ratio(kind, s, dtype, target_linear, h100_linear, target, h100)
                   for t, s in zip(kernel_seconds(entry)[0], shapes)]  # launch excluded before scaling
        predictor = fit_predictor(kind, dtype, shapes, seconds, target)
        entries[kind] = {"features": DEFAULT_FEATURES[kind], "source": source(kind, target.name),
                         "backend": f"{entry['backend']} (on the H100)", "curve": predictor.curve.asdict(),
                         "points": [{"shape": p["shape"], "seconds": t} for p, t in zip(entry["points"], seconds)]}
    return entries


def ratio(kind: str, shape, dtype: str, target_linear: Curve, h100_linear: Curve, target, h100) -> float:
    """Target time over H100 time for one shape of a kind, by the rule above."""
    if kind in GEMM_LIKE:
        return curve_seconds(kind, dtype, target_linear, shape) / curve_seconds(kind, dtype, h100_linear, shape)
    return h100.bytes_per_s / target.bytes_per_s


def source(kind: str, target: str) -> str:
    rule = "linear curve ratio" if kind in GEMM_LIKE else "bandwidth ratio"
    return f"transferred: measured h100-sxm x ({target}/h100 {rule})"
