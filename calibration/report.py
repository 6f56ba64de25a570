"""`python -m calibration report PROFILE.json`: the profile's prediction error on shapes it did not see.

Per kind, a random fifth of the measured shapes is held out, the kind is
refitted on the rest, and the held-out shapes are predicted; the table gives
the median and 90th percentile of |predicted - measured| / measured. `--folds N`
pools the errors of N random fifths (seeds `seed` to `seed + N - 1`).

Where the profile has its raw passes beside it (calibration/write.py), the
refit is the calibration's own: the training fifths' medians over passes are
fitted and pooled with their neighbours (calibration/pooling.py), and the
held-out shapes are held against their medians as measured. A second table
tests the pooling: each kernel's first pass, as measured and pooled with the
plane through the other kernels (at the weight one pass gets), against the
median of its other passes. Needs no torch: it reads the profile files only.
"""

from __future__ import annotations

import random

import numpy as np

from calibration.pooling import Pooling, pool, pooled_seconds
from calibration.write import read_passes
from emulator.cost.kernels import attention_of_kind
from emulator.cost.predictor import Curve, KindPredictor, fit_predictor
from emulator.cost.profile import load_profile, shape_from_json
from emulator.devices import device

MIN_POINTS = 5


def kind_points(profile: dict, kind: str, passes: dict | None) -> tuple[list, list[float], list | None]:
    """(shapes, seconds to hold predictions against, pass medians or None) of a kind's points."""
    raw = (passes or {}).get(kind)
    if raw:
        return ([shape_from_json(kind, p["shape"]) for p in raw], [float(np.median(p["pass_medians_s"])) for p in raw],
                [p["pass_medians_s"] for p in raw])
    points = profile["kinds"][kind]["points"]
    return [shape_from_json(kind, p["shape"]) for p in points], [p["seconds"] for p in points], None


def refit(profile: dict, kind: str, shapes, seconds, pass_seconds) -> KindPredictor:
    """The kind fitted to training points as the calibration fits it (pooled where passes are given)."""
    features, dtype = profile["kinds"][kind]["features"], profile["dtype"]
    predictor = fit_predictor(kind, dtype, shapes, seconds, device(profile["device"]), features=features)
    if pass_seconds is None:
        return predictor
    pooled, _ = pooled_seconds(predictor, seconds, pass_seconds)
    return KindPredictor(kind, dtype, predictor.curve, shapes, pooled, features, medians=seconds)


def holdout_errors(profile: dict, seed: int = 0, fraction: float = 0.2,
                   passes: dict | None = None) -> dict[str, np.ndarray]:
    """Relative errors on held-out shapes, per kind with at least MIN_POINTS points."""
    rng = random.Random(seed)
    errors = {}
    for kind in sorted(profile["kinds"]):
        shapes, seconds, pass_seconds = kind_points(profile, kind, passes)
        if len(shapes) < MIN_POINTS:
            continue
        order = list(range(len(shapes)))
        rng.shuffle(order)
        held = set(order[: max(1, round(fraction * len(shapes)))])
        train = [i for i in order if i not in held]
        predictor = refit(profile, kind, [shapes[i] for i in train], [seconds[i] for i in train],
                          [pass_seconds[i] for i in train] if pass_seconds else None)
        errors[kind] = np.array([abs(predictor.predict(shapes[i]) - seconds[i]) / seconds[i] for i in sorted(held)])
    return errors


def summary(errors: dict[str, np.ndarray]) -> dict[str, dict]:
    return {kind: {"held_out": len(e), "median": float(np.median(e)), "p90": float(np.quantile(e, 0.9))}
            for kind, e in errors.items()}


def pooled_holdout_errors(profile: dict, seed: int = 0, folds: int = 1,
                          passes: dict | None = None) -> dict[str, np.ndarray]:
    """Held-out errors of `folds` random fifths (seeds seed, seed + 1, ...), concatenated per kind."""
    runs = [holdout_errors(profile, seed + i, passes=passes) for i in range(folds)]
    return {kind: np.concatenate([r[kind] for r in runs]) for kind in runs[0]}


def pass_split_errors(profile: dict, passes: dict | None) -> dict[str, tuple[np.ndarray, np.ndarray, Pooling]]:
    """Per kind with pass medians: relative errors of a kernel's first pass, as measured and pooled,
    against the median of its other passes, and the kind's pooling."""
    errors = {}
    for kind, entry in sorted(profile["kinds"].items()):
        shapes, medians, pass_seconds = kind_points(profile, kind, passes)
        if pass_seconds is None or len(shapes) < 2:
            continue
        predictor = KindPredictor(kind, profile["dtype"], Curve(**entry["curve"]), shapes, medians, entry["features"])
        _, pooling = pool(predictor.residual, pass_seconds, predictor.left_out_corrections())
        if pooling is None:
            continue
        w = pooling.one_pass_weight()
        measured, pooled = [], []
        for i, point_passes in enumerate(pass_seconds):
            logs = np.log(point_passes)
            if len(logs) < 2:
                continue
            neighbours = np.log(medians[i]) - predictor.residual[i] + pooling.left_out[i]  # log s, i left out
            truth = np.median(logs[1:])
            measured.append(abs(np.expm1(logs[0] - truth)))
            pooled.append(abs(np.expm1(w * logs[0] + (1 - w) * neighbours - truth)))
        errors[kind] = (np.array(measured), np.array(pooled), pooling)
    return errors


def print_pass_split(profile: dict, passes: dict | None) -> dict[str, tuple[np.ndarray, np.ndarray, Pooling]]:
    errors = pass_split_errors(profile, passes)
    if not errors:
        return errors
    print("\none pass of each kernel against the median of its other passes, as measured | pooled "
          "with its neighbours (calibration/pooling.py)")
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
    profile, passes = load_profile(path), read_passes(path)
    errors = pooled_holdout_errors(profile, seed, folds, passes)
    rows = summary(errors)
    prov = profile["provenance"]
    print(f"{path}: {profile['device']} {profile['dtype']}, {prov['source']}: {prov.get('method', '')[:160]}")
    if folds > 1:
        print(f"held-out errors pooled over {folds} random fifths (seeds {seed}-{seed + folds - 1})"
              + (", refitted and pooled from the raw passes" if passes else ""))
    print_table(profile, rows, errors)
    print_pass_split(profile, passes)
    return rows


def print_table(profile: dict, rows: dict, errors: dict) -> None:
    print(f"{'kind':20s} {'points':>6s} {'held out':>8s} {'median err':>10s} {'p90 err':>8s}  source")
    for kind, entry in sorted(profile["kinds"].items()):
        r = rows.get(kind)
        source = entry.get("source", profile["provenance"]["source"])
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
            errs.append(abs(model.op_time(op) - p["seconds"]) / p["seconds"])
        e = np.array(errs)
        rows[kind] = {"points": len(e), "median": float(np.median(e)), "p90": float(np.quantile(e, 0.9)),
                      "fallback": fallback}
        print(f"{kind:20s} {len(e):6d} {100 * np.median(e):9.1f}% {100 * np.quantile(e, 0.9):7.1f}% {fallback:8d}")
    return rows
