"""`python -m calibration report PROFILE.json`: the profile's prediction error on shapes it did not see.

Per kind, a random fifth of the measured shapes is held out, the predictor is
refitted on the rest, and the held-out shapes are predicted; the table gives
the median and 90th percentile of |predicted - measured| / measured. One fifth
of a kind with tens of points gives a p90 that moves by several points from
seed to seed: `--folds N` pools the errors of N random fifths (seeds `seed` to
`seed + N - 1`).

Where the kernels were measured in several passes, a second table tests the
pooling of entries with their neighbours (emulator/cost/pooling.py): each
kernel's first pass, as measured and pooled with the plane through the other
kernels (at the weight one pass gets), against the median of its other passes.
Needs no torch: it reads the profile file only.
"""

from __future__ import annotations

import random

import numpy as np

from emulator.cost.kernels import attention_of_kind
from emulator.cost.pooling import Pooling
from emulator.cost.predictor import fit_predictor
from emulator.cost.profile import Profile, load_profile, shape_from_json
from emulator.devices import device

MIN_POINTS = 5


def holdout_errors(profile: dict, seed: int = 0, fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Relative errors on held-out shapes, per kind with at least MIN_POINTS points."""
    rng = random.Random(seed)
    errors = {}
    for kind, entry in sorted(profile["kinds"].items()):
        points = entry["points"]
        if len(points) < MIN_POINTS:
            continue
        order = list(range(len(points)))
        rng.shuffle(order)
        held = set(order[: max(1, round(fraction * len(points)))])
        train = [points[i] for i in order if i not in held]
        predictor = fit_predictor(kind, profile["dtype"], [shape_from_json(kind, p["shape"]) for p in train],
                                  [p["median_s"] for p in train], device(profile["device"]))
        errs = []
        for i in sorted(held):
            measured = points[i]["median_s"]
            predicted = predictor.predict(shape_from_json(kind, points[i]["shape"]))
            errs.append(abs(predicted - measured) / measured)
        errors[kind] = np.array(errs)
    return errors


def summary(errors: dict[str, np.ndarray]) -> dict[str, dict]:
    return {kind: {"held_out": len(e), "median": float(np.median(e)), "p90": float(np.quantile(e, 0.9))}
            for kind, e in errors.items()}


def pooled_holdout_errors(profile: dict, seed: int = 0, folds: int = 1) -> dict[str, np.ndarray]:
    """Held-out errors of `folds` random fifths (seeds seed, seed + 1, ...), concatenated per kind."""
    runs = [holdout_errors(profile, seed + i) for i in range(folds)]
    return {kind: np.concatenate([r[kind] for r in runs]) for kind in runs[0]}


def pass_split_errors(profile: dict) -> dict[str, tuple[np.ndarray, np.ndarray, Pooling]]:
    """Per kind with pass medians: relative errors of a kernel's first pass, as measured and pooled,
    against the median of its other passes, and the kind's pooling."""
    model = Profile(profile)
    errors = {}
    for kind, predictor in sorted(model.predictors.items()):
        if predictor.pooling is None:
            continue
        w = predictor.pooling.one_pass_weight()
        measured, pooled = [], []
        for i, point in enumerate(profile["kinds"][kind]["points"]):
            passes = np.log(point["pass_medians_s"])
            if len(passes) < 2:
                continue
            log_curve = np.log(point["median_s"]) - predictor.residual[i]
            neighbours = log_curve + predictor.pooling.left_out[i]  # log seconds, point i left out
            truth = np.median(passes[1:])
            measured.append(abs(np.expm1(passes[0] - truth)))
            pooled.append(abs(np.expm1(w * passes[0] + (1 - w) * neighbours - truth)))
        errors[kind] = (np.array(measured), np.array(pooled), predictor.pooling)
    return errors


def print_pass_split(profile: dict) -> dict[str, tuple[np.ndarray, np.ndarray, Pooling]]:
    errors = pass_split_errors(profile)
    if not errors:
        return errors
    print("\none pass of each kernel against the median of its other passes, as measured | pooled "
          "with its neighbours (emulator/cost/pooling.py)")
    print(f"{'kind':20s} {'kernels':>7s} {'pass sd':>7s} {'weight':>6s}  {'median err':>10s} {'p90 err':>8s} |"
          f" {'median err':>10s} {'p90 err':>8s}")
    for kind, (measured, pooled, pooling) in errors.items():
        print(f"{kind:20s} {len(measured):7d} {pooling.pass_sd:7.3f} {pooling.one_pass_weight():6.2f}  "
              f"{100 * np.median(measured):9.1f}% {100 * np.quantile(measured, 0.9):7.1f}% |"
              f" {100 * np.median(pooled):9.1f}% {100 * np.quantile(pooled, 0.9):7.1f}%")
    every_measured = np.concatenate([m for m, _, _ in errors.values()])
    every_pooled = np.concatenate([p for _, p, _ in errors.values()])
    print(f"{'all':20s} {len(every_measured):7d} {'':7s} {'':6s}  {100 * np.median(every_measured):9.1f}% "
          f"{100 * np.quantile(every_measured, 0.9):7.1f}% | {100 * np.median(every_pooled):9.1f}% "
          f"{100 * np.quantile(every_pooled, 0.9):7.1f}%")
    return errors


def report(path: str, seed: int = 0, folds: int = 1) -> dict[str, dict]:
    profile = load_profile(path)
    errors = pooled_holdout_errors(profile, seed, folds)
    rows = summary(errors)
    prov = profile["provenance"]
    method = " ".join(prov.get("method", "").split())
    print(f"{path}: {profile['device']} {profile['dtype']}, {prov['kind']}: {method[:160]}")
    if folds > 1:
        print(f"held-out errors pooled over {folds} random fifths (seeds {seed}-{seed + folds - 1})")
    print(f"{'kind':20s} {'points':>6s} {'held out':>8s} {'median err':>10s} {'p90 err':>8s}  source")
    for kind, entry in sorted(profile["kinds"].items()):
        r = rows.get(kind)
        source = entry.get("source", prov["kind"])
        if r is None:
            print(f"{kind:20s} {len(entry['points']):6d} {'-':>8s} {'(too few points)':>19s}  {source}")
        else:
            print(f"{kind:20s} {len(entry['points']):6d} {r['held_out']:8d} {100 * r['median']:9.1f}% "
                  f"{100 * r['p90']:7.1f}%  {source}")
    # Synthesized and transferred kinds are not measurements of this device: the summary leaves them out.
    real = [k for k, e in profile["kinds"].items() if k in errors
            and not e.get("source", "").startswith(("synthesized", "transferred"))]
    every = np.concatenate([errors[k] for k in real])
    print(f"{'all measured':20s} {sum(len(profile['kinds'][k]['points']) for k in real):6d} {len(every):8d} "
          f"{100 * np.median(every):9.1f}% {100 * np.quantile(every, 0.9):7.1f}%")
    print_pass_split(profile)
    return rows


def against(path: str, measured_path: str) -> dict[str, dict]:
    """Error of one profile's predictions at the points another profile measured (e.g. derived vs measured)."""
    from emulator.cost import Profile
    from emulator.ops import Op

    model_data, truth = load_profile(path), load_profile(measured_path)
    rows = {}
    print(f"{path} predicting the points measured in {measured_path}")
    print(f"{'kind':20s} {'points':>6s} {'median err':>10s} {'p90 err':>8s} {'fallback':>8s}")
    for kind, entry in sorted(truth["kinds"].items()):
        model = Profile(model_data, attention_of_kind(kind))
        errs, fallback = [], 0
        for p in entry["points"]:
            op = Op("", shape_from_json(kind, p["shape"]), truth["dtype"])
            fallback += not model.covers(op)
            errs.append(abs(model.op_time(op) - p["median_s"]) / p["median_s"])
        e = np.array(errs)
        rows[kind] = {"points": len(e), "median": float(np.median(e)), "p90": float(np.quantile(e, 0.9)),
                      "fallback": fallback}
        print(f"{kind:20s} {len(e):6d} {100 * np.median(e):9.1f}% {100 * np.quantile(e, 0.9):7.1f}% {fallback:8d}")
    return rows
