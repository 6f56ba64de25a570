"""From logged measurements to each kernel's raw point: its passes restated to one speed, or its failure.

A kernel's passes are its logged entries without an error. Each entry's times
are multiplied by the setup's restatement factor (1 on a GPU; on a CPU, from
the clock's baselines to the run's typical speed), and the point keeps the
restated pass medians; calibration/write.py turns them into the profile's
seconds. A kernel whose every pass failed is listed as skipped with its error.
"""

from __future__ import annotations

from calibration.grid import spec_key
from emulator.cost.profile import shape_from_json


def kernels_of(done: dict) -> list[list[dict]]:
    """The logged entries grouped per kernel (one entry per pass)."""
    by_spec: dict[str, list[dict]] = {}
    for key, entry in done.items():
        if key != "host":
            spec = spec_key(entry["kind"], shape_from_json(entry["kind"], entry["shape"]))
            by_spec.setdefault(spec, []).append(entry)
    return list(by_spec.values())


def raw_point(good: list[dict], factor) -> dict:
    """One kernel's raw point from its successful passes, each restated by factor(entry)."""
    factors = [factor(e) for e in good]
    point = {
        "shape": good[0]["shape"],
        "pass_medians_s": [e["median_s"] * f for e, f in zip(good, factors)],
        "min_s": min(e["min_s"] * f for e, f in zip(good, factors)),
        "spread": max(e["spread"] for e in good),  # within a pass, the worst
        "repeats": sum(e["repeats"] for e in good),
        "rejected": sum(e["rejected"] for e in good),
        "backend": good[0]["backend"],
        "buffers": good[0]["buffers"],
        "wall_s": round(sum(e["wall_s"] for e in good), 3),
    }
    for drift in ("compute_drift", "stream_drift"):  # the references' readings per pass, where taken
        if drift in good[0]:
            point[drift + "s"] = [round(e.get(drift, 1.0), 4) for e in good]
    return point


def reduce(done: dict, setup) -> tuple[dict[str, list[dict]], list[dict]]:
    """({kind: raw points}, failed kernels as skipped entries)."""
    entries = [e for key, e in done.items() if key != "host" and "error" not in e]
    factor = setup.restatement(entries)
    by_kind: dict[str, list[dict]] = {}
    failed = []
    for logged in kernels_of(done):
        good = [e for e in logged if "error" not in e]
        if not good:
            failed.append({"kind": logged[0]["kind"], "shape": logged[0]["shape"], "reason": logged[0]["error"]})
            continue
        by_kind.setdefault(good[0]["kind"], []).append(raw_point(good, factor))
    return dict(sorted(by_kind.items())), failed
