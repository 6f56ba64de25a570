"""Profile files (calibrated kernel times of one device) and the Profile cost model.

A profile is the one thing the emulator reads from calibration. Version 2:

    {"schema": "genai-emulator.profile", "version": 2,
     "device": "<catalog name: datasheet for the fallback and memory>", "dtype": "fp16",
     "provenance": {"source": "measured" | "derived", "method": "<command>", "date": "...",
                    "versions": {"torch": ...}, "device_fingerprint": {...}, ...},
     "host": {"s_per_kernel": 1e-05, "s_per_op": 6e-05, "included_in_kernel_times": false},
     "kinds": {"linear": {"features": "linear", "backend": "...", "curve": {...},
                          "points": [{"shape": {...}, "seconds": ..., "median_s": ...}]}},
     "attention_default": {"bidirectional": "fa3", "causal": "fa3", "decode": "fa3"},  # optional
     "skipped": [...]}

A kernel's time is its device time in a back-to-back replay (as a CUDA graph
times it), launch excluded: launch cost is the host model's (`host`, and the
runtime). A kind whose points were timed one launch at a time declares the
launch cost they carry, `launch_in_times_s`, and it is taken off every point
and the curve's overhead when the profile is read (`kernel_seconds`).
Each point's seconds are final: noise handling (medians over passes, drift,
pooling with neighbours) happened when the profile was written, and the raw
passes live beside it in a sidecar file that only `calibration report` reads.
A point's optional `median_s` is its median over passes as measured, where
pooling moved `seconds` from it: interpolation between shapes goes through
the medians (emulator/cost/predictor.py).
Attention kinds are named by implementation (`attention_flash`, `attention_fa3`,
... emulator/cost/kernels.py); `attention_default` says which one costs each
shape class when a user asks for the default (else `flash`, or the profile's
first fused implementation); asking for one the profile lacks is an error
that lists those it has.
`features` names the shape-feature set (emulator/cost/predictor.py) the kind
was fitted in. `load_profile` refuses a wrong schema, an old version, a
corrupted file or a time or rate that is not finite and positive (JSON's
Infinity and NaN included; a kernel time at most an hour) with one line naming
the file and the problem. `Profile`
predicts every op it covers (kind measured, same element width, shape inside
the calibrated domain); for the rest it falls back to a roofline, counted: the
kind's fitted curve for a measured kind of the same element width, else the
device's datasheet roofline.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, replace
from importlib import resources
from pathlib import Path

from emulator.cost.collectives import collective_time
from emulator.cost.kernels import (ATTENTION_IMPLEMENTATIONS, ATTENTION_KINDS, DEFAULT_ATTENTION, SHAPE_CLASSES,
                                   check_attention, kernel_kind, shape_class)
from emulator.cost.predictor import FEATURE_SETS, KINDS, Curve, KindPredictor
from emulator.cost.roofline import Roofline
from emulator.devices import catalog, device
from emulator.errors import UserError, clip, excerpt
from emulator.ops import DTYPE_BYTES, Op
from emulator.shapes import (Attention, Collective, Conv, Elementwise, Embedding, Linear, Matmul, Norm, Resample,
                             Softmax)

SCHEMA = "genai-emulator.profile"
VERSION = 2
SHAPE_TYPES = {
    "linear": Linear, "matmul": Matmul, "conv2d": Conv, "conv1d": Conv, "conv3d": Conv,
    **{kind: Attention for kind in ATTENTION_KINDS},
    "group_norm": Norm, "layer_norm": Norm, "rms_norm": Norm,
    "softmax": Softmax, "elementwise": Elementwise, "resample": Resample, "embedding": Embedding,
}
TUPLE_FIELDS = ("size", "kernel")
POINT_KEYS = ("shape", "seconds")
SOURCES = ("measured", "derived")
MAX_KERNEL_S = 3600.0  # no one kernel runs an hour: a time past it is a corrupted or hand-edited file


def shape_to_json(shape) -> dict:
    return asdict(shape)


def shape_from_json(kind: str, data: dict):
    fields = {k: tuple(v) if k in TUPLE_FIELDS else v for k, v in data.items()}
    return SHAPE_TYPES[kind](**fields)


def load_profile(path: str | Path) -> dict:
    """Read and validate a profile file; any defect is a one-line UserError."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such profile file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: corrupted profile file ({e})") from None
    check_profile(data, str(path))
    return data


def check_profile(data, where: str) -> None:
    def fail(problem: str):
        raise UserError(f"{where}: {problem}")

    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        fail(f"not a profile file (expected schema {SCHEMA!r})")
    if data.get("version") == 1:
        fail(f"profile version 1 is no longer read; convert it with `python -m calibration convert {where}`")
    if data.get("version") != VERSION:
        fail(f"profile version {excerpt(data.get('version'))} is not supported (this emulator reads version {VERSION})")
    for key in ("device", "dtype", "provenance", "host", "kinds"):
        if key not in data:
            fail(f"missing key {key!r}")
    if not isinstance(data["device"], str):
        fail(f"device must name a catalog device, got {excerpt(data['device'])}")
    if not isinstance(data["dtype"], str) or data["dtype"] not in DTYPE_BYTES:
        fail(f"dtype {excerpt(data['dtype'])} is not one of {', '.join(DTYPE_BYTES)}")
    if not isinstance(data["provenance"], dict) or data["provenance"].get("source") not in SOURCES:
        fail(f"provenance.source must be one of {', '.join(SOURCES)}")
    host = data["host"] if isinstance(data["host"], dict) else {}
    for key in ("s_per_kernel", "s_per_op"):
        if seconds_problem(host.get(key), zero=True):
            fail(f"host.{key} must be a number of seconds from 0 to {MAX_KERNEL_S:g}, got {excerpt(host.get(key))}")
    if not isinstance(data["kinds"], dict):
        fail("kinds must be a mapping of kernel kinds")
    for kind, entry in data["kinds"].items():
        check_kind(kind, entry, fail)
    check_attention_default(data.get("attention_default", {}), data["kinds"], fail)


def check_attention_default(defaults, kinds: dict, fail) -> None:
    """`attention_default` maps shape classes to fused implementations the profile has kernels for."""
    if not isinstance(defaults, dict):
        fail("attention_default must map shape classes to attention implementations")
    for cls, name in defaults.items():
        if cls not in SHAPE_CLASSES:
            fail(f"attention_default: unknown shape class {excerpt(cls)} (one of {', '.join(SHAPE_CLASSES)})")
        if name == "baseline" or f"attention_{name}" not in kinds:
            fail(f"attention_default.{cls}: {excerpt(name)} is not a fused attention implementation of this profile")


def seconds_problem(value, zero: bool = False) -> bool:
    """Whether `value` is not a finite time in (0, MAX_KERNEL_S] ([0, ...] with `zero`)."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return True
    return not (0 <= value if zero else 0 < value) or value > MAX_KERNEL_S


def curve_problem(curve: dict) -> str | None:
    """What is wrong with a curve's values: rates, overhead and sharpness finite and positive, the cache
    level's bytes and rate finite and not negative (0: a single memory level), a cache level with a rate."""
    for key, value in curve.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            return f"{key} must be a finite number, got {excerpt(value)}"
        if value < 0 or (value == 0 and key not in ("cache_bytes", "cache_bytes_per_s")):
            return f"{key} must be positive, got {excerpt(value)}"
    if curve.get("overhead_s", 0) > MAX_KERNEL_S:
        return f"overhead_s must be at most {MAX_KERNEL_S:g} s, got {excerpt(curve['overhead_s'])}"
    if curve.get("cache_bytes", 0) > 0 and not curve.get("cache_bytes_per_s", 0) > 0:
        return "cache_bytes_per_s must be positive where cache_bytes is"
    return None


def check_kind(kind: str, entry, fail) -> None:
    if kind not in KINDS:
        fail(f"unknown kernel kind {excerpt(kind)}")
    features = entry.get("features") if isinstance(entry, dict) else None
    if not isinstance(features, str) or features not in FEATURE_SETS:
        fail(f"kinds.{kind}.features must name one of the feature sets {', '.join(FEATURE_SETS)}")
    try:
        Curve(**entry["curve"])
    except (KeyError, TypeError):
        fail(f"kinds.{kind}.curve must hold flops_per_s, bytes_per_s, overhead_s")
    problem = curve_problem(entry["curve"])
    if problem:
        fail(f"kinds.{kind}.curve.{problem}")
    if seconds_problem(entry.get("launch_in_times_s", 0.0), zero=True) or entry.get("launch_in_times_s", 0.0) > 1e-3:
        fail(f"kinds.{kind}.launch_in_times_s must be seconds from 0 to 1e-3, got {excerpt(entry['launch_in_times_s'])}")
    points = entry.get("points")
    if not isinstance(points, list) or not points:
        fail(f"kinds.{kind}.points must be a non-empty list")
    for i, p in enumerate(points):
        check_point(f"kinds.{kind}.points[{i}]", kind, p, fail)


def check_point(where: str, kind: str, p, fail) -> None:
    if not isinstance(p, dict) or any(k not in p for k in POINT_KEYS):
        fail(f"{where} lacks one of {POINT_KEYS}")
    for key in ("seconds", "median_s"):
        if key in p and seconds_problem(p[key]):
            fail(f"{where}.{key} must be a positive number of seconds up to {MAX_KERNEL_S:g}, got {excerpt(p[key])}")
    try:
        shape_from_json(kind, p["shape"])
    except (AttributeError, TypeError, ValueError) as e:
        fail(f"{where}.shape is not a valid {kind} shape ({clip(str(e), 120)})")


def shipped_profile(name: str) -> Path | None:
    """The profile shipped in calibration/profiles/ for a catalog device (the file its catalog entry names),
    or for any other name the shipped file `<name>.json`; None when there is none."""
    entry = catalog().get(name)
    filename = entry.profile if entry else f"{name}.json"
    if filename is None:
        return None
    path = resources.files("calibration").joinpath("profiles", filename)
    return Path(str(path)) if path.is_file() else None


def launch_free(seconds: float, launch_s: float) -> float:
    """A kernel time with `launch_s` of launch cost taken off, never below a tenth of itself."""
    return max(seconds - launch_s, 0.1 * seconds)


def kernel_seconds(entry: dict) -> tuple[list[float], list[float]]:
    """(seconds, medians) of a kind's points as device time, launch excluded: the emulator's kernel-time
    convention (a back-to-back replay), whatever the timer that measured them."""
    launch_s = entry.get("launch_in_times_s", 0.0)
    seconds = [launch_free(p["seconds"], launch_s) for p in entry["points"]]
    medians = [launch_free(p.get("median_s", p["seconds"]), launch_s) for p in entry["points"]]
    return seconds, medians


def predictor_of(kind: str, dtype: str, entry: dict) -> KindPredictor:
    """A kind's predictor from its profile entry: its curve, points and feature set, launch excluded."""
    shapes = [shape_from_json(kind, p["shape"]) for p in entry["points"]]
    seconds, medians = kernel_seconds(entry)
    curve = Curve(**entry["curve"])
    launch_s = entry.get("launch_in_times_s", 0.0)
    if launch_s:
        curve = replace(curve, overhead_s=launch_free(curve.overhead_s, launch_s))
    return KindPredictor(kind, dtype, curve, shapes, seconds, entry["features"], medians)


def attention_implementations(data: dict) -> tuple[str, ...]:
    """The attention implementations a profile has kernels for, in registry order."""
    return tuple(name for name in ATTENTION_IMPLEMENTATIONS if f"attention_{name}" in data["kinds"])


def attention_defaults(data: dict) -> dict[str, str]:
    """{shape class: implementation} the profile costs attention as by default: its `attention_default`
    entry where it names one, else `flash` where the profile has it, else its first fused implementation."""
    fused = [n for n in attention_implementations(data) if n != "baseline"]
    fallback = "flash" if "flash" in fused or not fused else fused[0]
    return {c: data.get("attention_default", {}).get(c, fallback) for c in SHAPE_CLASSES}


def kind_origin(data: dict, kind: str) -> str:
    """Where a kind's points come from (a TIME_SOURCES entry): the profile's own source, or the kind's
    `source` note: kernels imported from public tables measured on this GPU are measured; another device's,
    transferred, are scaled; a curve synthesized from another kind's is derived."""
    note = data["kinds"][kind].get("source", "")
    if note.startswith("imported"):
        return "measured"
    if note.startswith("transferred"):
        return "scaled"
    if note.startswith("synthesized"):
        return "derived"
    return "measured" if note == "public" and data["provenance"]["source"] == "measured" else data["provenance"]["source"]


class Profile:
    """Cost model from a calibrated profile, with roofline fallback outside its domain."""

    calibrated = True

    def __init__(self, data: dict, attention: str = DEFAULT_ATTENTION, name: str = "profile"):
        self.data = data
        self.name = name
        self.implementations = attention_implementations(data)
        check_attention(attention, self.implementations, f"profile {name}")
        self.attention = attention
        self.attention_defaults = attention_defaults(data)
        self.dtype = data["dtype"]
        self.device = device(data["device"])
        self.fallback = Roofline(self.device, attention)
        host = data["host"]
        included = host.get("included_in_kernel_times", False)
        self.host_s_per_kernel = 0.0 if included else float(host["s_per_kernel"])
        self.host_s_per_op = 0.0 if included else float(host["s_per_op"])
        self.predictors: dict[str, KindPredictor] = {
            kind: predictor_of(kind, self.dtype, entry) for kind, entry in data["kinds"].items()}
        self._memo: dict = {}

    def implementation(self, a: Attention) -> str:
        """The attention implementation an attention shape is costed as: the one asked for, or by default
        the profile's default for its shape class."""
        return self.attention_defaults[shape_class(a)] if self.attention == DEFAULT_ATTENTION else self.attention

    @classmethod
    def from_file(cls, path: str | Path, attention: str = DEFAULT_ATTENTION) -> "Profile":
        return cls(load_profile(path), attention, name=Path(path).stem)

    def _cost(self, op: Op) -> tuple[float, bool, str]:
        """(seconds, covered by the profile, time source), memoized per shape and dtype."""
        key = (op.shape, op.dtype)
        if key not in self._memo and isinstance(op.shape, Collective):
            # Not a kernel kind of the profile: the device's NCCL table, covered where interpolated in it.
            seconds, source = collective_time(op, self.device)
            self._memo[key] = (seconds, source == "measured", source)
        if key not in self._memo:
            resolved = self.implementation(op.shape) if isinstance(op.shape, Attention) else self.attention
            kind = kernel_kind(op, resolved)
            predictor = self.predictors.get(kind)
            same_width = op.dtype_bytes == DTYPE_BYTES[self.dtype]
            covered = predictor is not None and same_width and predictor.covers(op.shape)
            if covered:
                self._memo[key] = (predictor.predict(op.shape), True, kind_origin(self.data, kind))
            elif predictor is not None and same_width:
                # Outside the measured domain: the kind's calibrated roofline (attained rates and launch
                # overhead), without the neighbour correction; the datasheet's would ignore both.
                self._memo[key] = (predictor.curve_time(op.shape), False, "curve")
            else:
                self._memo[key] = (self.fallback.op_time(op, resolved), False, "datasheet")
        return self._memo[key]

    def covers(self, op: Op) -> bool:
        return self._cost(op)[1]

    def time_source(self, op: Op) -> str:
        return self._cost(op)[2]

    def op_time(self, op: Op) -> float:
        return self._cost(op)[0]
