"""A device's own profile reconciled with its public tables: attention libraries added, launch excess declared.

Reference values are hand-made: a profile whose kernel times carry a known
launch cost must predict them with exactly that cost taken off.
"""

import copy

import pytest

from calibration.public_merge import add_public_attention, declare_launch_excess
from emulator.cost import Profile
from emulator.cost.profile import kind_origin, shape_to_json
from emulator.ops import Op
from emulator.shapes import Attention, Linear

CURVE = {"flops_per_s": 5e14, "bytes_per_s": 2e12, "overhead_s": 4e-6}


def profile(kinds: dict, timer: str = "CUDA events") -> dict:
    return {"schema": "genai-emulator.profile", "version": 2, "device": "h100-sxm", "dtype": "fp16",
            "provenance": {"source": "measured", "timer": timer, "citations": []},
            "host": {"s_per_kernel": 1e-5, "s_per_op": 6e-5, "included_in_kernel_times": False},
            "kinds": kinds}


def entry(features: str, shapes_seconds: list[tuple], **extra) -> dict:
    return {"features": features, "backend": "test", "curve": dict(CURVE), **extra,
            "points": [{"shape": shape_to_json(s), "seconds": t} for s, t in shapes_seconds]}


GEMMS = [Linear(m, 64, 64, bias=False) for m in (1, 2, 4, 8)]
ATTENTION = [Attention(1, h, s, s, 64, "self") for h in (1, 4) for s in (1024, 4096)]


def test_declared_launch_cost_is_taken_off_every_point_and_the_curve():
    raw = profile({"linear": entry("linear", [(s, 6e-6) for s in GEMMS], launch_in_times_s=2e-6)})
    p = Profile(raw)
    assert p.op_time(Op("x", GEMMS[1], "fp16")) == pytest.approx(4e-6)  # 6 us measured - 2 us of launch
    assert p.predictors["linear"].curve.overhead_s == pytest.approx(2e-6)  # 4 us fitted - 2 us
    huge = copy.deepcopy(raw)
    huge["kinds"]["linear"]["launch_in_times_s"] = 7e-6  # more than a point's time: a tenth of it is kept
    assert Profile(huge).op_time(Op("x", GEMMS[0], "fp16")) == pytest.approx(0.6e-6)


def test_public_attention_joins_the_own_profile_and_the_launch_excess_is_the_gemms_difference():
    ours = profile({"linear": entry("linear", [(s, 5e-6 + 1e-7 * i) for i, s in enumerate(GEMMS)]),
                    "attention_flash": entry("attention", [(a, 1e-4) for a in ATTENTION])})
    tables = profile({"linear": entry("linear", [(s, 3e-6 + 1e-7 * i) for i, s in enumerate(GEMMS)]),
                      "attention_fa3": entry("attention", [(a, 8e-5) for a in ATTENTION]),
                      "conv2d_like": None}, timer="CUDA-graph replay")
    del tables["kinds"]["conv2d_like"]
    tables["provenance"]["citations"] = ["aiconfigurator-core==0.12.0 (...): h100_sxm/attention/..."]
    merged = declare_launch_excess(add_public_attention(ours, tables, "h100-sxm-public.json"), tables)
    assert set(merged["kinds"]) == {"linear", "attention_flash", "attention_fa3"}
    assert kind_origin(merged, "attention_fa3") == "measured"  # the GPU's own kernels, timed by NVIDIA
    assert merged["kinds"]["linear"]["launch_in_times_s"] == pytest.approx(2e-6)  # 5 us ours - 3 us replayed
    assert "launch_in_times_s" not in merged["kinds"]["attention_fa3"]  # graph-replayed already
    assert any(c.startswith("imported attention_fa3") for c in merged["provenance"]["citations"])
    p = Profile(merged, "fa3")
    assert p.op_time(Op("a", ATTENTION[0], "fp16")) == pytest.approx(8e-5)
    assert Profile(merged).implementation(ATTENTION[0]) == "flash"  # the default stays our own
    again = declare_launch_excess(add_public_attention(merged, tables, "h100-sxm-public.json"), tables)
    assert again == merged  # merging twice changes nothing


def test_a_graph_timed_profile_declares_no_launch_excess():
    ours = profile({"linear": entry("linear", [(s, 5e-6) for s in GEMMS])}, timer="CUDA-graph replay")
    tables = profile({"linear": entry("linear", [(s, 3e-6) for s in GEMMS])})
    assert declare_launch_excess(ours, tables) is ours
