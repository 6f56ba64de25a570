"""`python -m calibration convert OLD.json`: a version-1 profile rewritten as version 2.

Version 1 kept every measurement detail in the profile and left the pooling of
noisy entries with their neighbours to the emulator, at every load. The
conversion does that pooling once, with the profile's own fitted curves, so
that the emulator predicts exactly what it did, at every shape; it
names each kind's feature set (a CPU's convolutions in the per-image sets, as
the version-1 emulator chose them by device kind), restructures the
provenance, and moves the raw passes to the sidecar file (calibration/write.py).
"""

from __future__ import annotations

import json
from pathlib import Path

from calibration.fingerprint import provenance_fields
from calibration.pooling import pooled_seconds
from calibration.setups import features_for
from calibration.write import profile_document, profile_points, write
from emulator.cost.predictor import Curve, KindPredictor
from emulator.cost.profile import shape_from_json
from emulator.devices import device as catalog_device
from emulator.errors import UserError

MEASUREMENT_KEYS = ("shape", "pass_medians_s", "min_s", "spread", "repeats", "rejected", "backend", "buffers",
                    "wall_s", "compute_drifts", "stream_drifts")


def convert(path: str | Path, out: str | Path | None = None) -> Path:
    """Convert the version-1 profile at `path`, in place unless `out` is given; returns the path written."""
    path = Path(path)
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: cannot read a profile ({e})") from None
    if old.get("version") != 1:
        raise UserError(f"{path}: not a version-1 profile (version {old.get('version')!r})")
    device_kind = catalog_device(old["device"]).kind
    kinds, raw = {}, {}
    for kind, entry in old["kinds"].items():
        kinds[kind], raw[kind] = converted_kind(kind, old["dtype"], entry, features_for(kind, device_kind))
    profile = profile_document(old["device"], old["dtype"], provenance(old), host(old), kinds,
                               old.get("skipped", []))
    target = Path(out) if out else path
    write(target, profile, {k: v for k, v in raw.items() if v})
    return target


def converted_kind(kind: str, dtype: str, entry: dict, features: str) -> tuple[dict, list[dict]]:
    """A version-2 kind entry (its curve kept, its entries pooled once) and its raw points for the sidecar."""
    points = entry["points"]
    shapes = [shape_from_json(kind, p["shape"]) for p in points]
    medians = [p["median_s"] for p in points]
    seconds = medians
    predictor = KindPredictor(kind, dtype, Curve(**entry["curve"]), shapes, medians, features)
    if all("pass_medians_s" in p for p in points):
        seconds, _ = pooled_seconds(predictor, medians, [p["pass_medians_s"] for p in points])
    new = {"features": features, "backend": entry.get("backend", ""), "curve": entry["curve"],
           "points": profile_points(points, seconds, medians)}
    if "source" in entry:
        new["source"] = entry["source"]
    raw = [{k: p[k] for k in MEASUREMENT_KEYS if k in p} for p in points if "pass_medians_s" in p]
    return new, raw if len(raw) == len(points) else []


def provenance(old: dict) -> dict:
    """Version 1's prose provenance and fingerprint as version 2's fields."""
    prov, fields = old["provenance"], provenance_fields(old.get("fingerprint", {}))
    new = {"source": prov["kind"], "method": " ".join(prov.get("method", "").split()), **fields,
           "converted_from": "profile version 1"}
    new["date"] = prov.get("measured_at") or new["date"]
    if prov.get("timer"):
        new["timer"] = prov["timer"]
    if prov.get("drift_correction") and prov["drift_correction"] != "none":
        new["noise"] = ("samples rescaled by drift reference kernels; passes restated with per-kind fitted "
                        "exponents; entries pooled with their neighbours by inverse variance (at conversion)")
    if prov.get("citations"):
        new["citations"] = prov["citations"]
    return new


def host(old: dict) -> dict:
    """The host model; version 1 CPU profiles had no per-op time beside the per-kernel one."""
    h = {k: v for k, v in old["host"].items() if k != "s_per_op_by_model"}
    h.setdefault("s_per_op", h["s_per_kernel"])
    if "s_per_op_by_model" in old["host"]:
        h["s_per_op_by_model"] = old["host"]["s_per_op_by_model"]
    return h
