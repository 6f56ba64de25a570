"""The last steps of calibration: fit each kind, pool its noisy entries, write the profile and its passes.

A kind's raw points (shape, pass medians, and how they were measured) become a
profile v2 entry (emulator/cost/profile.py): the curve is fitted to the
points' medians over passes, each median is pooled with its neighbours where
the passes say how noisy it is (calibration/pooling.py), and the profile holds
the pooled seconds (the prediction at the shape) beside the median (what the
plane between shapes goes through). Everything else about a point (its
passes, spread, repeats, backend, drift readings) goes to the sidecar file
NAME.passes.json beside the profile, which `calibration report` reads.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path

from calibration.pooling import pooled_seconds
from emulator.cost.predictor import fit_predictor
from emulator.cost.profile import SCHEMA, VERSION, check_profile, shape_from_json

PASSES_SCHEMA = "genai-emulator.passes"


def sidecar_path(profile_path: str | Path) -> Path:
    """Where a profile's raw passes are kept: NAME.passes.json beside NAME.json."""
    path = Path(profile_path)
    return path.with_name(path.stem + ".passes.json")


def kind_entry(kind: str, dtype: str, points: list[dict], catalog, features: str) -> dict:
    """A profile's entry for one kind from its raw points (each with "shape" and "pass_medians_s")."""
    shapes = [shape_from_json(kind, p["shape"]) for p in points]
    medians = [statistics.median(p["pass_medians_s"]) for p in points]
    predictor = fit_predictor(kind, dtype, shapes, medians, catalog, features=features)
    seconds, _ = pooled_seconds(predictor, medians, [p["pass_medians_s"] for p in points])
    backends = Counter(p.get("backend", "") for p in points)
    return {"features": features, "backend": backends.most_common(1)[0][0], "curve": predictor.curve.asdict(),
            "points": profile_points(points, seconds, medians)}


def profile_points(points: list[dict], seconds: list[float], medians: list[float]) -> list[dict]:
    """A kind's profile points: shape and seconds, and the median where pooling moved the seconds from it."""
    return [{"shape": p["shape"], "seconds": s, **({"median_s": m} if s != m else {})}
            for p, s, m in zip(points, seconds, medians)]


def profile_document(device: str, dtype: str, provenance: dict, host: dict, kinds: dict,
                     skipped: list[dict], attention_default: dict | None = None) -> dict:
    """A complete, checked profile v2 (`attention_default`: shape class -> implementation, if any)."""
    profile = {"schema": SCHEMA, "version": VERSION, "device": device, "dtype": dtype,
               "provenance": provenance, "host": host, "kinds": kinds, "skipped": skipped,
               **({"attention_default": attention_default} if attention_default else {})}
    check_profile(profile, "new profile")
    return profile


def write(path: str | Path, profile: dict, raw_points: dict[str, list[dict]] | None = None) -> None:
    """Write the profile, and its kinds' raw points (in the profile's point order) to the sidecar."""
    path = Path(path)
    path.write_text(json.dumps(profile, indent=1) + "\n")
    if raw_points:
        passes = {"schema": PASSES_SCHEMA, "version": 1, "profile": path.name,
                  "kinds": {kind: raw_points[kind] for kind in profile["kinds"] if kind in raw_points}}
        sidecar_path(path).write_text(json.dumps(passes, indent=1) + "\n")


def read_passes(profile_path: str | Path) -> dict[str, list[dict]] | None:
    """The raw points per kind kept beside a profile, or None where it has no sidecar."""
    path = sidecar_path(profile_path)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("schema") != PASSES_SCHEMA:
        return None
    return data["kinds"]
