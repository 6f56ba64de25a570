"""The image DiTs (FLUX.1, SD3.5, PixArt-Sigma): hand-written transformers against the real diffusers classes.

Each hand-written transformer is compared with the frontend's lowering of the
diffusers class built from the published config (fake tensors, no weights), at
reduced depth and a small latent to stay fast: FLOPs and parameters within 1%,
the same attention calls. At full depth, the parameters meet the published
figures within 2%.
"""

from collections import Counter
from dataclasses import replace

import pytest

import workloads
from emulator.builder import GraphBuilder
from emulator.errors import UserError
from workloads import image_dits
from workloads.blocks.flux import FLUX_DEV, FLUX_SCHNELL, build_flux
from workloads.blocks.mmdit import SD35_LARGE, SD35_MEDIUM, build_mmdit
from workloads.blocks.pixart import PIXART_SIGMA, build_pixart

NAMES = ["flux1-dev", "flux1-schnell", "sd3.5-large", "sd3.5-medium", "pixart-sigma"]

# transformer/config.json of each Hugging Face repo (constructor keywords only).
FLUX_DEV_CONFIG = {"patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
                   "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
                   "pooled_projection_dim": 768, "guidance_embeds": True, "axes_dims_rope": [16, 56, 56]}
FLUX_SCHNELL_CONFIG = {**FLUX_DEV_CONFIG, "guidance_embeds": False}
SD35_LARGE_CONFIG = {"sample_size": 128, "patch_size": 2, "in_channels": 16, "num_layers": 38,
                     "attention_head_dim": 64, "num_attention_heads": 38, "joint_attention_dim": 4096,
                     "caption_projection_dim": 2432, "pooled_projection_dim": 2048, "out_channels": 16,
                     "pos_embed_max_size": 192, "qk_norm": "rms_norm"}
SD35_MEDIUM_CONFIG = {**SD35_LARGE_CONFIG, "num_layers": 24, "num_attention_heads": 24,
                      "caption_projection_dim": 1536, "pos_embed_max_size": 384,
                      "dual_attention_layers": list(range(13))}
PIXART_SIGMA_CONFIG = {"num_attention_heads": 16, "attention_head_dim": 72, "in_channels": 4, "out_channels": 8,
                       "num_layers": 28, "cross_attention_dim": 1152, "attention_bias": True, "sample_size": 128,
                       "patch_size": 2, "activation_fn": "gelu-approximate", "num_embeds_ada_norm": 1000,
                       "norm_type": "ada_norm_single", "norm_elementwise_affine": False, "norm_eps": 1e-6,
                       "caption_channels": 4096, "interpolation_scale": 2, "use_additional_conditions": False}

LATENT_H, LATENT_W, TEXT = 16, 24, 40  # small and non-square; text length unlike the image's
# name: (diffusers class, published config, depth override, hand-written graph at that depth)
SMALL = {
    "flux1-dev": ("FluxTransformer2DModel", FLUX_DEV_CONFIG, {"num_layers": 2, "num_single_layers": 2},
                  lambda b: build_flux(b, replace(FLUX_DEV, double_layers=2, single_layers=2), 1, LATENT_H, LATENT_W,
                                       TEXT)),
    "flux1-schnell": ("FluxTransformer2DModel", FLUX_SCHNELL_CONFIG, {"num_layers": 1, "num_single_layers": 1},
                      lambda b: build_flux(b, replace(FLUX_SCHNELL, double_layers=1, single_layers=1), 1, LATENT_H,
                                           LATENT_W, TEXT)),
    "sd3.5-large": ("SD3Transformer2DModel", SD35_LARGE_CONFIG, {"num_layers": 2},
                    lambda b: build_mmdit(b, replace(SD35_LARGE, layers=2), 1, LATENT_H, LATENT_W, TEXT)),
    # a dual-attention block, a plain one and the context-pre-only last one
    "sd3.5-medium": ("SD3Transformer2DModel", SD35_MEDIUM_CONFIG, {"num_layers": 3, "dual_attention_layers": [0]},
                     lambda b: build_mmdit(b, replace(SD35_MEDIUM, layers=3, dual_attention_layers=(0,)), 1, LATENT_H,
                                           LATENT_W, TEXT)),
    "pixart-sigma": ("PixArtTransformer2DModel", PIXART_SIGMA_CONFIG, {"num_layers": 2},
                     lambda b: build_pixart(b, replace(PIXART_SIGMA, layers=2), 1, LATENT_H, LATENT_W, TEXT)),
}
# Published sizes: FLUX.1-dev/schnell model cards ("a 12 billion parameter rectified flow transformer"); Stability
# AI's SD3.5 announcement and model cards (Large 8.1B, Medium 2.5B); PixArt-Sigma paper, arXiv 2403.04692 (0.6B).
PUBLISHED = {"flux1-dev": 12e9, "flux1-schnell": 12e9, "sd3.5-large": 8.1e9, "sd3.5-medium": 2.5e9,
             "pixart-sigma": 0.6e9}


def inputs(cls: str, model, torch) -> dict:
    """One denoising call's keyword inputs at batch 1 on the small latent."""
    text = torch.randn(1, TEXT, 4096)
    if cls == "FluxTransformer2DModel":
        tokens = (LATENT_H // 2) * (LATENT_W // 2)
        extra = {"guidance": torch.tensor([3.5])} if model.config.guidance_embeds else {}
        return {"hidden_states": torch.randn(1, tokens, 64), "encoder_hidden_states": text,
                "pooled_projections": torch.randn(1, 768), "timestep": torch.tensor([1.0]),
                "img_ids": torch.zeros(tokens, 3), "txt_ids": torch.zeros(TEXT, 3), **extra}
    latent = torch.randn(1, model.config.in_channels, LATENT_H, LATENT_W)
    if cls == "SD3Transformer2DModel":
        return {"hidden_states": latent, "encoder_hidden_states": text, "pooled_projections": torch.randn(1, 2048),
                "timestep": torch.tensor([1.0])}
    return {"hidden_states": latent, "encoder_hidden_states": text, "encoder_attention_mask": torch.ones(1, TEXT),
            "timestep": torch.tensor([1.0]), "added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}


def lowered(cls: str, config: dict):
    """(OpGraph of one call, parameter count) of the diffusers class built from `config` on fake tensors."""
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    from torch._subclasses.fake_tensor import FakeTensorMode

    from workloads.frontend import lower_module

    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            model = getattr(diffusers, cls)(**config).eval()
            count = sum(p.numel() for p in model.parameters())
            return lower_module(model, return_dict=False, **inputs(cls, model, torch)), count
    finally:
        torch.set_default_dtype(default)


def attention_calls(graph):
    shapes = (op.shape for op in graph.attention_ops)
    return Counter((s.variant, s.batch, s.heads, s.q_len, s.kv_len, s.head_dim) for s in shapes)


@pytest.mark.parametrize("name", NAMES)
def test_hand_written_transformer_matches_the_lowered_diffusers_class(name):
    cls, config, depth, build = SMALL[name]
    real, count = lowered(cls, {**config, **depth})
    b = GraphBuilder("fp16")
    build(b)
    mine = b.build()
    assert mine.totals.flops == pytest.approx(real.totals.flops, rel=0.01)
    assert mine.totals.params == pytest.approx(real.totals.params, rel=0.01)
    assert mine.totals.params == pytest.approx(count, rel=0.01)
    assert attention_calls(mine) == attention_calls(real)


@pytest.mark.parametrize("name", NAMES)
def test_full_transformer_has_the_published_parameter_count(name, default_pipelines):
    params = default_pipelines[name].stage("transformer").graph(1).totals.params
    if name.startswith("sd3.5"):  # Stability's figures count the stored 2-D position table (a buffer in diffusers)
        spec = SD35_LARGE if name == "sd3.5-large" else SD35_MEDIUM
        params += spec.pos_embed_max_size ** 2 * spec.dim
    assert params == pytest.approx(PUBLISHED[name], rel=0.02)


def test_registered_in_order_with_published_defaults(default_pipelines):
    assert [w.name for w in image_dits.WORKLOADS] == NAMES
    expected = {"flux1-dev": (28, 1, 512), "flux1-schnell": (4, 1, 256), "sd3.5-large": (28, 2, 256 + 77),
                "sd3.5-medium": (40, 2, 256 + 77), "pixart-sigma": (20, 2, 300)}
    for name, (calls, batch, text) in expected.items():
        p = default_pipelines[name]
        assert [s.name for s in p.stages] == ["text_encoder", "transformer", "vae_decoder"]
        t = p.stage("transformer")
        assert (t.calls, t.batch) == (calls, batch)
        assert p.stage("text_encoder").batch == batch and p.stage("vae_decoder").batch == 1
        # 1024x1024: a 128x128 latent in 2x2 patches, 4096 image tokens; MMDiTs attend over image and text
        # together, SD3.5-medium's dual attention over the image alone; PixArt's image cross-attends to the text.
        image_only = {"sd3.5-medium": {4096}, "pixart-sigma": {4096}}.get(name, set())
        joint = set() if name == "pixart-sigma" else {4096 + text}
        assert {op.shape.q_len for op in t.graph(1).attention_ops} == joint | image_only


def test_knobs_height_width_and_guidance_modes():
    p = workloads.build("sd3.5-medium", height=768, width=1360, guidance_mode="two-calls", steps=10, batch=2)
    t = p.stage("transformer")
    assert (t.calls, t.batch) == (20, 2) and p.stage("text_encoder").batch == 4
    assert (768 // 16) * (1360 // 16) in {op.shape.q_len for op in t.graph(1).attention_ops}
    dev = workloads.build("flux1-dev", guidance_mode="two-calls").stage("transformer")
    assert (dev.calls, dev.batch) == (56, 1)
    off = workloads.build("pixart-sigma", guidance_mode="off", prompt_tokens=120).stage("transformer")
    assert (off.calls, off.batch) == (20, 1)
    assert {op.shape.kv_len for op in off.graph(1).attention_ops} == {4096, 120}


@pytest.mark.parametrize("name, knobs, message", [
    ("flux1-dev", {"height": 1000}, "--height 1000 is not valid for flux1-dev: use a multiple of 16"),
    ("sd3.5-large", {"width": 4096}, "--width 4096 is not valid for sd3.5-large: use a multiple of 16 from 16 to 3072"),
    ("flux1-schnell", {"guidance_mode": "batched"}, "not supported by flux1-schnell; it runs off"),
    ("pixart-sigma", {"prompt_tokens": 600}, "exceeds the 512 T5 tokens"),
    ("sd3.5-medium", {"image_size": 1024}, "takes no --image-size"),
])
def test_bad_knobs_are_one_line_user_errors(name, knobs, message):
    with pytest.raises(UserError, match=message) as e:
        workloads.build(name, **knobs)
    assert "\n" not in str(e.value)
