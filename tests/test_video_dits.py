"""The hand-written video DiTs against the frontend's lowering of the real diffusers classes (fake tensors).

At reduced depth and small latents (both sides built from the same config override): FLOPs and parameters
within 1% and the same multiset of attention shapes. At the published configs: parameters within 1% of
the diffusers module's and near the published sizes (model names and papers: Wan 2.1 1.3B and 14B,
HunyuanVideo 13B, CogVideoX 5B, LTX-Video 1.9B).
"""

from collections import Counter

import pytest

from emulator.builder import GraphBuilder
from emulator.errors import UserError
from workloads import build, cogvideox, hunyuan_video, ltx_video, video_dits, wan
from workloads.blocks.video_dit import denoise

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from dataclasses import replace  # noqa: E402

from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: E402

from workloads.frontend import lower_module  # noqa: E402


def _fake(make):
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            return make()
    finally:
        torch.set_default_dtype(default)


def lowered(cls: str, config: dict, inputs):
    """The lowered graph of one call of diffusers' `cls` built from `config`, on `inputs()` (args, kwargs)."""
    def make():
        module = getattr(diffusers, cls)(**config).eval()
        args, kwargs = inputs()
        return lower_module(module, *args, **kwargs)
    return _fake(make)


def module_params(cls: str, config: dict) -> int:
    return _fake(lambda: sum(p.numel() for p in getattr(diffusers, cls)(**config).parameters()))


WAN_CONFIG = {"num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960}
COG_CONFIG = {"num_attention_heads": 48, "attention_head_dim": 64, "use_rotary_positional_embeddings": True}
CASES = {  # name: (diffusers class, reduced config, inputs, our spec at that depth, latent f, h, w, text tokens)
    "wan": ("WanTransformer3DModel", {**WAN_CONFIG, "num_layers": 2},
            lambda: ((torch.randn(1, 16, 3, 8, 12), torch.tensor([500]), torch.randn(1, 512, 4096)),
                     {"return_dict": False}),
            replace(wan.WAN_1_3B, layers=2), (3, 8, 12), 512),
    "cogvideox": ("CogVideoXTransformer3DModel", {**COG_CONFIG, "num_layers": 2},
                  lambda: ((torch.randn(1, 3, 16, 8, 12), torch.randn(1, 226, 4096), torch.tensor([500])),
                           {"image_rotary_emb": (torch.randn(72, 64), torch.randn(72, 64)), "return_dict": False}),
                  replace(cogvideox.TRANSFORMER, layers=2), (3, 8, 12), 226),
    "hunyuan": ("HunyuanVideoTransformer3DModel", {"num_layers": 2, "num_single_layers": 2},
                lambda: ((torch.randn(1, 16, 2, 8, 12), torch.tensor([500]), torch.randn(1, 256, 4096),
                          torch.ones(1, 256, dtype=torch.long), torch.randn(1, 768), torch.tensor([6000.0])),
                         {"return_dict": False}),
                replace(hunyuan_video.TRANSFORMER, layers=2, single_layers=2), (2, 8, 12), 256),
    "ltx": ("LTXVideoTransformer3DModel", {"num_layers": 2},
            lambda: ((torch.randn(1, 72, 128), torch.randn(1, 128, 4096), torch.tensor([500]),
                      torch.ones(1, 128, dtype=torch.long)),
                     {"num_frames": 3, "height": 4, "width": 6, "rope_interpolation_scale": (8 / 25, 32, 32),
                      "return_dict": False}),
            replace(ltx_video.TRANSFORMER, layers=2), (3, 4, 6), 128),
}


def ours(spec, f, h, w, text):
    b = GraphBuilder("bf16")
    denoise(b, spec, 1, f, h, w, text)
    return b.build()


def attention_calls(graph):
    return Counter((op.shape.q_len, op.shape.kv_len, op.shape.heads, op.shape.head_dim) for op in graph.attention_ops)


@pytest.mark.parametrize("case", list(CASES))
def test_hand_written_dit_matches_the_lowered_diffusers_class(case):
    cls, config, inputs, spec, (f, h, w), text = CASES[case]
    real, mine = lowered(cls, config, inputs), ours(spec, f, h, w, text)
    assert mine.totals.flops == pytest.approx(real.totals.flops, rel=0.01)
    assert mine.totals.params == pytest.approx(real.totals.params, rel=0.01)
    assert attention_calls(mine) == attention_calls(real)


FULL = {  # name: (diffusers class, published config, our spec, published parameters)
    "wan2.1-t2v-1.3b": ("WanTransformer3DModel", {**WAN_CONFIG, "num_layers": 30}, wan.WAN_1_3B, 1.3e9),
    "wan2.1-t2v-14b": ("WanTransformer3DModel", {}, wan.WAN_14B, 14e9),
    "hunyuanvideo": ("HunyuanVideoTransformer3DModel", {}, hunyuan_video.TRANSFORMER, 13e9),
    "cogvideox-5b": ("CogVideoXTransformer3DModel", {**COG_CONFIG, "num_layers": 42}, cogvideox.TRANSFORMER, 5e9),
    "ltx-video": ("LTXVideoTransformer3DModel", {}, ltx_video.TRANSFORMER, 1.9e9),
}


@pytest.mark.parametrize("name", list(FULL))
def test_full_configs_have_the_published_parameter_counts(name):
    cls, config, spec, published = FULL[name]
    mine = ours(spec, 1, 4, 4, 16).totals.params
    assert mine == pytest.approx(module_params(cls, config), rel=0.01)
    # HunyuanVideo (12.8B) and LTX-Video (1.92B) are within 2% of their published sizes; the other names round
    # down: Wan 2.1 14B holds 14.29B, 1.3B holds 1.42B, CogVideoX-5B holds 5.57B (the diffusers modules agree)
    assert 0.98 * published <= mine <= 1.12 * published


def test_registered_in_order_with_published_defaults():
    assert [w.name for w in video_dits.WORKLOADS] == ["cogvideox-5b", "hunyuanvideo", "wan2.1-t2v-1.3b",
                                                     "wan2.1-t2v-14b", "ltx-video"]
    stages = {s.name: s for s in build("wan2.1-t2v-14b").stages}
    assert (stages["transformer"].calls, stages["transformer"].batch) == (100, 1)  # CFG as two calls
    stages = {s.name: s for s in build("hunyuanvideo").stages}
    assert (stages["transformer"].calls, stages["transformer"].batch) == (50, 1)  # guidance distilled
    stages = {s.name: s for s in build("cogvideox-5b").stages}
    assert (stages["transformer"].calls, stages["transformer"].batch) == (50, 2)  # CFG batched
    assert [s.name for s in build("ltx-video").stages] == ["text_encoder", "transformer", "vae_decoder"]


@pytest.mark.parametrize("name, knobs", [("wan2.1-t2v-14b", {"frames": 80}), ("hunyuanvideo", {"height": 728}),
                                         ("cogvideox-5b", {"frames": 50}), ("ltx-video", {"frames": 157}),
                                         ("ltx-video", {"width": 720})])
def test_bad_sizes_are_one_line_user_errors(name, knobs):
    with pytest.raises(UserError) as e:
        build(name, **knobs)
    assert "\n" not in str(e.value)


def test_video_tokens_at_defaults():
    tokens = {s.name: s.description for s in build("wan2.1-t2v-14b").stages}
    assert "32760 video tokens" in tokens["transformer"]  # 21 x 30 x 52
    assert "118800 video tokens" in {s.name: s.description for s in build("hunyuanvideo").stages}["transformer"]
