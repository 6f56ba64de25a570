"""The shipped profiles: loadable, honest about their provenance, and accurate on shapes they did not see."""

import json
from pathlib import Path

import numpy as np
import pytest

from calibration.report import holdout_errors
from emulator.cost import Profile, cost_model, load_profile, stage_time

PROFILES = Path(__file__).parents[1] / "calibration" / "profiles"
GATED_KINDS = ("conv2d", "linear", "attention_flash", "attention_baseline", "group_norm")


def public_kinds(profile):
    return [k for k, e in profile["kinds"].items() if e.get("source") == "public"]


def test_every_shipped_profile_loads():
    paths = sorted(PROFILES.glob("*.json"))
    assert {p.stem for p in paths} >= {"a100-sxm4-80gb", "h100-sxm", "cpu-fp32"}
    for path in paths:
        profile = load_profile(path)
        Profile(profile)
        assert profile["provenance"]["kind"] in ("measured", "derived")


def test_derived_a100_profile_cites_its_sources_and_reproduces_them():
    profile = load_profile(PROFILES / "a100-sxm4-80gb.json")
    prov = profile["provenance"]
    assert prov["kind"] == "derived"
    assert any("vidur" in c for c in prov["citations"]) and any("flash-attention" in c for c in prov["citations"])
    kinds = public_kinds(profile)
    assert {"linear", "attention_flash", "attention_baseline"} <= set(kinds)
    errors = holdout_errors({**profile, "kinds": {k: profile["kinds"][k] for k in kinds}})
    every = np.concatenate(list(errors.values()))
    assert np.median(every) <= 0.10, {k: float(np.median(e)) for k, e in errors.items()}


def test_measured_cpu_profile_holds_its_accuracy():
    # A regression guard at the level measured when the profile was made (pooled held-out median of
    # the five gated kinds 7-10% over four seeds, p90 24-32%), not the 8% / 20% target, which the
    # development machine's drift still keeps out of reach (docs/ARCHITECTURE.md).
    profile = load_profile(PROFILES / "cpu-fp32.json")
    assert profile["provenance"]["kind"] == "measured" and profile["dtype"] == "fp32"
    assert profile["provenance"]["drift_correction"] != "none"
    errors = holdout_errors(profile)
    pooled = np.concatenate([errors[k] for k in GATED_KINDS])
    assert np.median(pooled) <= 0.12 and np.quantile(pooled, 0.9) <= 0.40


def test_predictor_meets_the_targets_on_low_noise_gpu_measurements():
    # On the H100 (CUDA events, no drift) the same method reaches the accuracy targets for GEMMs
    # and baseline attention: median <= 8%, p90 <= 20% on held-out shapes.
    errors = holdout_errors(load_profile(PROFILES / "h100-sxm.json"))
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
    assert profile["provenance"]["kind"] == "measured" and "H100" in profile["fingerprint"]["gpu"]
    host = profile["host"]
    assert host["s_per_op"] > host["s_per_kernel"] > 0  # real model code costs more than a bare dispatch


def test_shipped_derived_profiles_are_what_derive_writes(tmp_path):
    import shutil

    from calibration.derive import derive_all

    shutil.copy(PROFILES / "h100-sxm.json", tmp_path / "h100-sxm.json")
    derive_all(tmp_path)
    for name in ("a100-sxm4-80gb.json", "h100-sxm-derived.json"):
        assert json.loads((tmp_path / name).read_text()) == json.loads((PROFILES / name).read_text()), name
