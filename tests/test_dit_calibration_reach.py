"""`calibration run --workloads` over the diffusion transformers, on the planning path (no GPU): the names are
accepted, their long attention and 3-D convs enter the specs, and an H100's plan keeps what fits its limits,
skipping the rest with a reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from calibration import __main__ as cli
from calibration.gpu import CudaSetup, set_bytes_limit
from calibration.grid import spec_key, workload_specs
from calibration.plan import plan
from emulator.devices import device
from emulator.shapes import Attention, Conv

IMAGE_DITS = ["flux1-dev", "flux1-schnell", "sd3.5-large", "sd3.5-medium", "pixart-sigma"]
VIDEO_DITS = ["cogvideox-5b", "hunyuanvideo", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "ltx-video"]


@pytest.fixture(scope="module")
def specs() -> dict[str, list]:
    return {name: workload_specs([name], "fp16") for name in IMAGE_DITS + VIDEO_DITS}


def h100_plan(specs_list):
    """(kernels to measure, skipped) as `calibration run --device cuda` plans them on an H100 80GB."""
    h100 = device("h100-sxm")
    limits = replace(CudaSetup.limits, max_set_bytes=set_bytes_limit(int(h100.memory_bytes)))
    unique = {spec_key(k, s): (k, s) for k, s in specs_list}.values()
    return plan(unique, "fp16", limits, h100)


def flash(specs_list) -> list[Attention]:
    return [s for k, s in specs_list if k == "attention_flash"]


def test_run_accepts_the_dit_names_and_passes_them_on(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("calibration.run.run", lambda *args: seen.setdefault("args", args))
    argv = ["run", "--device", "cuda", "--workloads", "flux1-dev", "wan2.1-t2v-14b", "--out", str(tmp_path / "p.json")]
    assert cli.main(argv) == 0
    assert seen["args"][3] == ["flux1-dev", "wan2.1-t2v-14b"]


def test_run_refuses_an_unknown_name_in_one_line(capsys, tmp_path):
    assert cli.main(["run", "--device", "cuda", "--workloads", "flux1-pro", "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "flux1-pro" in err and "\n" not in err


@pytest.mark.parametrize("name,tokens", [("flux1-dev", 4608), ("flux1-schnell", 4352), ("sd3.5-large", 4429),
                                         ("wan2.1-t2v-1.3b", 32760), ("wan2.1-t2v-14b", 32760),
                                         ("cogvideox-5b", 17776), ("hunyuanvideo", 119056)])
def test_the_transformers_joint_self_attention_enters_the_specs(specs, name, tokens):
    assert any(s.q_len == s.kv_len == tokens for s in flash(specs[name])), name
    assert any(k == "attention_baseline" and s.q_len == tokens for k, s in specs[name])


@pytest.mark.parametrize("name", ["wan2.1-t2v-1.3b", "wan2.1-t2v-14b"])
def test_wan_cross_attention_from_video_tokens_to_the_text_enters_the_specs(specs, name):
    assert any(s.q_len == 32760 and s.kv_len == 512 for s in flash(specs[name]))


@pytest.mark.parametrize("name", VIDEO_DITS)
def test_video_vae_3d_convs_enter_the_specs(specs, name):
    convs = [s for k, s in specs[name] if k == "conv3d"]
    assert convs and all(isinstance(s, Conv) and len(s.size) == 3 for s in convs)
    assert any(s.kernel == (3, 3, 3) for s in convs), name


def test_an_h100_plan_keeps_the_dits_tens_of_thousands_of_tokens_and_their_3d_convs(specs):
    todo, _ = h100_plan([x for name in ("flux1-dev", "wan2.1-t2v-14b") for x in specs[name]])
    kept = {spec_key(k.kind, k.shape) for k in todo}
    for q, kv, heads in ((32760, 32760, 40), (32760, 512, 40), (4608, 4608, 24)):
        assert spec_key("attention_flash", Attention(1, heads, q, kv, 128, "self" if q == kv else "cross")) in kept
    assert sum(k.kind == "conv3d" for k in todo) >= 10


def test_an_h100_plan_measures_every_image_dit_shape(specs):
    todo, skipped = h100_plan([x for name in IMAGE_DITS for x in specs[name]])
    assert todo and not skipped


def test_what_an_h100_plan_skips_is_past_its_limits_and_says_why(specs):
    """HunyuanVideo's 119k-token attention and its VAE at 720p, Wan 14B's baseline attention: each skipped
    with its estimate or footprint; the shipped grid's long-attention shapes cover them for prediction."""
    _, skipped = h100_plan([x for name in VIDEO_DITS for x in specs[name]])
    assert skipped
    for s in skipped:
        assert s["reason"].startswith(("estimated", "needs")), s
    assert any(s["kind"] == "attention_flash" and s["shape"]["q_len"] == 119056 for s in skipped)
