"""The shipped profiles: loadable, honest about their provenance, and accurate on shapes they did not see."""

import json
from pathlib import Path

import numpy as np
import pytest

from calibration.report import holdout_errors
from calibration.write import read_passes
from emulator.cost import Profile, cost_model, load_profile, stage_time
from emulator.errors import UserError

PROFILES = Path(__file__).parents[1] / "calibration" / "profiles"
GATED_KINDS = ("conv2d", "linear", "attention_flash", "attention_baseline", "group_norm")


def public_kinds(profile):
    return [k for k, e in profile["kinds"].items() if e.get("source") == "public"]


def shipped_paths():
    return sorted(p for p in PROFILES.glob("*.json") if not p.name.endswith(".passes.json"))


def test_every_shipped_profile_loads():
    paths = shipped_paths()
    assert {p.stem for p in paths} >= {"a100-sxm4-80gb", "h100-sxm", "cpu-fp32"}
    for path in paths:
        profile = load_profile(path)
        Profile(profile)
        assert profile["provenance"]["source"] in ("measured", "derived")


def test_derived_a100_profile_cites_its_sources_and_reproduces_them():
    profile = load_profile(PROFILES / "a100-sxm4-80gb.json")
    prov = profile["provenance"]
    assert prov["source"] == "derived"
    assert any("vidur" in c for c in prov["citations"]) and any("flash-attention" in c for c in prov["citations"])
    kinds = public_kinds(profile)
    assert {"linear", "attention_flash", "attention_baseline"} <= set(kinds)
    errors = holdout_errors({**profile, "kinds": {k: profile["kinds"][k] for k in kinds}})
    every = np.concatenate(list(errors.values()))
    assert np.median(every) <= 0.10, {k: float(np.median(e)) for k, e in errors.items()}


def test_measured_cpu_profile_holds_its_accuracy():
    # A regression guard at the level measured when the profile was made (pooled held-out median of
    # the five gated kinds 7-10% over four seeds, p90 24-32%), not the 8% / 20% target, which the
    # development machine's drift still keeps out of reach (docs/notes/2026-11-26-cpu-accuracy.md).
    path = PROFILES / "cpu-fp32.json"
    profile = load_profile(path)
    assert profile["provenance"]["source"] == "measured" and profile["dtype"] == "fp32"
    assert "drift" in profile["provenance"]["noise"]
    errors = holdout_errors(profile, passes=read_passes(path))
    pooled = np.concatenate([errors[k] for k in GATED_KINDS])
    assert np.median(pooled) <= 0.12 and np.quantile(pooled, 0.9) <= 0.40


def test_predictor_meets_the_targets_on_low_noise_gpu_measurements():
    # On the H100 (CUDA events, no drift) the same method reaches the accuracy targets for GEMMs
    # and baseline attention: median <= 8%, p90 <= 20% on held-out shapes.
    path = PROFILES / "h100-sxm.json"
    errors = holdout_errors(load_profile(path), passes=read_passes(path))
    for kind in ("linear", "attention_baseline", "matmul"):
        assert np.median(errors[kind]) <= 0.08 and np.quantile(errors[kind], 0.9) <= 0.20, kind


@pytest.mark.parametrize("name", ["stable-diffusion", "llama2-7b", "parti"])
def test_flash_is_never_slower_with_the_default_profile(name):
    import workloads

    p = workloads.build(name)
    for stage in p.stages:
        flash = stage_time(stage, cost_model("a100-sxm4-80gb", "flash"))[1].seconds
        base = stage_time(stage, cost_model("a100-sxm4-80gb", "baseline"))[1].seconds
        assert flash <= base * (1 + 1e-9), stage.name


def test_profile_file_round_trips_through_json(tmp_path):
    data = load_profile(PROFILES / "a100-sxm4-80gb.json")
    path = tmp_path / "copy.json"
    path.write_text(json.dumps(data))
    assert load_profile(path) == data


def test_measured_h100_profile_records_where_it_was_measured():
    profile = load_profile(PROFILES / "h100-sxm.json")
    prov = profile["provenance"]
    assert prov["source"] == "measured" and "H100" in prov["device_fingerprint"]["gpu"]
    assert prov["versions"]["torch"].startswith("2.") and prov["date"].startswith("2026-11-25")
    host = profile["host"]
    assert host["s_per_op"] > host["s_per_kernel"] > 0  # real model code costs more than a bare dispatch


def test_shipped_derived_profiles_are_what_derive_writes(tmp_path):
    """Public points are data, copied exactly; fitted numbers are compared where the data pin them down.

    A curve's constants are not all identifiable from its points (a cache level no point reaches, a
    compute rate of a memory-bound kind): refitted with another scipy they move, by up to 6x here,
    while the curve at the kind's own points agrees to 1e-5. Transferred kinds evaluate donor curves
    at other kinds' shapes, beyond the donor's data: there one in a few hundred points moved up to 16%
    between library versions (scipy 1.17 against the one the profiles were first derived with).
    """
    import shutil

    from calibration.derive import derive_all
    from emulator.cost.predictor import Curve, curve_seconds
    from emulator.cost.profile import shape_from_json

    shutil.copy(PROFILES / "h100-sxm.json", tmp_path / "h100-sxm.json")
    derive_all(tmp_path)
    for name in ("a100-sxm4-80gb.json", "h100-sxm-derived.json"):
        fresh, shipped = load_profile(tmp_path / name), load_profile(PROFILES / name)
        assert fresh["provenance"] == shipped["provenance"] and fresh["host"] == shipped["host"], name
        assert set(fresh["kinds"]) == set(shipped["kinds"]), name
        for kind, entry in shipped["kinds"].items():
            new = fresh["kinds"][kind]
            assert [p["shape"] for p in new["points"]] == [p["shape"] for p in entry["points"]], (name, kind)
            ratio = np.array([n["seconds"] / p["seconds"] for n, p in zip(new["points"], entry["points"])])
            shapes = [shape_from_json(kind, p["shape"]) for p in entry["points"]]
            curves = np.array([curve_seconds(kind, "fp16", Curve(**new["curve"]), s)
                               / curve_seconds(kind, "fp16", Curve(**entry["curve"]), s) for s in shapes])
            if entry["source"] == "public":
                assert ratio == pytest.approx(1.0, rel=1e-12), (name, kind)
            else:
                assert np.median(np.abs(ratio - 1)) <= 1e-4 and np.abs(ratio - 1).max() <= 0.25, (name, kind)
            assert np.median(np.abs(curves - 1)) <= 1e-3 and np.abs(curves - 1).max() <= 0.05, (name, kind)


def test_a_converted_profile_predicts_what_its_version_1_predicted(tmp_path):
    """The shipped CPU profile was converted from version 1, whose emulator pooled at load: the conversion
    must give the same prediction at its measured shapes (pooled) and between them (the raw medians'
    plane). The reference: version 1's rule (the plane through the raw medians, each entry pooled at
    load) recomputed here from the raw passes kept beside the profile."""
    import math
    import statistics

    from calibration.convert import convert
    from calibration.pooling import pool
    from emulator.cost.predictor import KindPredictor
    from emulator.cost.profile import shape_from_json

    passes = read_passes(PROFILES / "cpu-fp32.json")
    converted = Profile(load_profile(PROFILES / "cpu-fp32.json"))
    for kind in ("linear", "group_norm"):
        predictor = converted.predictors[kind]
        raw = passes[kind]
        shapes = [shape_from_json(kind, p["shape"]) for p in raw]
        medians = [statistics.median(p["pass_medians_s"]) for p in raw]
        plain = KindPredictor(kind, "fp32", predictor.curve, shapes, medians, predictor.features)
        pooled, _ = pool(plain.residual, [p["pass_medians_s"] for p in raw], plain.left_out_corrections())
        for i in (0, len(shapes) // 2, len(shapes) - 1):
            assert predictor.predict(shapes[i]) == pytest.approx(plain.curve_time(shapes[i]) * math.exp(pooled[i]))
        assert predictor.correction(plain.x[0] + 0.3) == pytest.approx(plain.correction(plain.x[0] + 0.3))
    with pytest.raises(UserError, match="not a version-1 profile"):
        convert(PROFILES / "cpu-fp32.json", tmp_path / "again.json")
