"""Real PyTorch models built from configs (no weights), their example inputs, and their lowering.

`build_module("diffusers:UNet2DConditionModel", config)` makes the model with
fake tensors (no memory, any size), and `module_graph(spec, config, batch)`
lowers one forward call into an OpGraph with `workloads.frontend`. Presets
name the configurations the suite is built from, so `--config sd-v1.5-unet`
needs no file; a JSON file of constructor keywords works for any supported
class. The example inputs per class are what one inference call takes: a
denoising step of a UNet, a decode of the VAE, the prompt of a text encoder,
the prefill of an LLM.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from emulator.errors import UserError

SD_UNET = {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": 2, "cross_attention_dim": 768,
               "block_out_channels": (320, 640, 1280, 1280), "attention_head_dim": 8, "norm_num_groups": 32,
               "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
               "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3}
SD_VAE = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
              "block_out_channels": (128, 256, 512, 512), "down_block_types": ("DownEncoderBlock2D",) * 4,
              "up_block_types": ("UpDecoderBlock2D",) * 4}
CLIP_L_TEXT = {"vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                   "num_attention_heads": 12, "max_position_embeddings": 77, "hidden_act": "quick_gelu"}
LLAMA2_7B = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096, "rms_norm_eps": 1e-5}

# Diffusion transformers and their video VAEs: the released checkpoints' Hugging Face config.json
# (transformer/config.json, vae/config.json), as quoted by the sources named per preset.
FLUX1_DEV = {"attention_head_dim": 128, "axes_dims_rope": (16, 56, 56), "guidance_embeds": True, "in_channels": 64,
             "joint_attention_dim": 4096, "num_attention_heads": 24, "num_layers": 19, "num_single_layers": 38,
             "patch_size": 1, "pooled_projection_dim": 768}
SD35_LARGE = {"attention_head_dim": 64, "caption_projection_dim": 2432, "in_channels": 16, "joint_attention_dim": 4096,
              "num_attention_heads": 38, "num_layers": 38, "out_channels": 16, "patch_size": 2,
              "pooled_projection_dim": 2048, "pos_embed_max_size": 192, "qk_norm": "rms_norm", "sample_size": 128}
SD35_MEDIUM = {**SD35_LARGE, "caption_projection_dim": 1536, "num_attention_heads": 24, "num_layers": 24,
               "pos_embed_max_size": 384, "dual_attention_layers": tuple(range(13))}
PIXART_SIGMA = {"activation_fn": "gelu-approximate", "attention_bias": True, "attention_head_dim": 72,
                "caption_channels": 4096, "cross_attention_dim": 1152, "in_channels": 4, "interpolation_scale": 2,
                "norm_elementwise_affine": False, "norm_eps": 1e-6, "norm_type": "ada_norm_single",
                "num_attention_heads": 16, "num_embeds_ada_norm": 1000, "num_layers": 28, "out_channels": 8,
                "patch_size": 2, "sample_size": 128, "use_additional_conditions": False}
WAN21_1B = {"added_kv_proj_dim": None, "attention_head_dim": 128, "cross_attn_norm": True, "eps": 1e-6,
            "ffn_dim": 8960, "freq_dim": 256, "in_channels": 16, "num_attention_heads": 12, "num_layers": 30,
            "out_channels": 16, "patch_size": (1, 2, 2), "qk_norm": "rms_norm_across_heads", "text_dim": 4096}
WAN21_14B = {**WAN21_1B, "ffn_dim": 13824, "num_attention_heads": 40, "num_layers": 40}
HUNYUAN_VIDEO = {"in_channels": 16, "out_channels": 16, "num_attention_heads": 24, "attention_head_dim": 128,
                 "num_layers": 20, "num_single_layers": 40, "num_refiner_layers": 2, "mlp_ratio": 4.0,
                 "patch_size": 2, "patch_size_t": 1, "qk_norm": "rms_norm", "guidance_embeds": True,
                 "text_embed_dim": 4096, "pooled_projection_dim": 768, "rope_theta": 256.0,
                 "rope_axes_dim": (16, 56, 56)}
COGVIDEOX_5B = {"activation_fn": "gelu-approximate", "attention_bias": True, "attention_head_dim": 64,
                "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 16, "max_text_seq_length": 226,
                "norm_elementwise_affine": True, "norm_eps": 1e-5, "num_attention_heads": 48, "num_layers": 42,
                "out_channels": 16, "patch_size": 2, "sample_frames": 49, "sample_height": 60, "sample_width": 90,
                "spatial_interpolation_scale": 1.875, "temporal_compression_ratio": 4,
                "temporal_interpolation_scale": 1.0, "text_embed_dim": 4096, "time_embed_dim": 512,
                "timestep_activation_fn": "silu", "use_learned_positional_embeddings": False,
                "use_rotary_positional_embeddings": True}
LTX_VIDEO = {"activation_fn": "gelu-approximate", "attention_bias": True, "attention_head_dim": 64,
             "attention_out_bias": True, "caption_channels": 4096, "cross_attention_dim": 2048, "in_channels": 128,
             "norm_elementwise_affine": False, "norm_eps": 1e-6, "num_attention_heads": 32, "num_layers": 28,
             "out_channels": 128, "patch_size": 1, "patch_size_t": 1, "qk_norm": "rms_norm_across_heads"}

PRESETS = {  # name -> (module spec, constructor config): the components of the hand-written suite
    "sd-v1.5-unet": ("diffusers:UNet2DConditionModel", SD_UNET),
    "sd-vae-decoder": ("diffusers:AutoencoderKL", SD_VAE),
    "clip-vit-l14-text": ("transformers:CLIPTextModel", CLIP_L_TEXT),
    "llama2-7b": ("transformers:LlamaForCausalLM", LLAMA2_7B),
}
# name -> (module spec, constructor config, where the config is published). A VAE's config is its class's
# defaults, which diffusers sets to the released VAE; "tiling" is no constructor keyword: it turns on
# the VAE's tiled decode, as the model's diffusers pipeline documentation does for long videos.
DIT_PRESETS = {
    "flux.1-dev": ("diffusers:FluxTransformer2DModel", FLUX1_DEV,
                   "black-forest-labs/FLUX.1-dev transformer/config.json"),
    "sd3.5-large": ("diffusers:SD3Transformer2DModel", SD35_LARGE,
                    "stabilityai/stable-diffusion-3.5-large transformer/config.json"),
    "sd3.5-medium": ("diffusers:SD3Transformer2DModel", SD35_MEDIUM,
                     "stabilityai/stable-diffusion-3.5-medium transformer/config.json"),
    "pixart-sigma": ("diffusers:PixArtTransformer2DModel", PIXART_SIGMA,
                     "PixArt-alpha/PixArt-Sigma-XL-2-1024-MS transformer/config.json"),
    "wan2.1-t2v-1.3b": ("diffusers:WanTransformer3DModel", WAN21_1B,
                        "Wan-AI/Wan2.1-T2V-1.3B-Diffusers; diffusers scripts/convert_wan_to_diffusers.py"),
    "wan2.1-t2v-14b": ("diffusers:WanTransformer3DModel", WAN21_14B,
                       "Wan-AI/Wan2.1-T2V-14B-Diffusers; diffusers scripts/convert_wan_to_diffusers.py"),
    "hunyuan-video": ("diffusers:HunyuanVideoTransformer3DModel", HUNYUAN_VIDEO,
                      "hunyuanvideo-community/HunyuanVideo; diffusers scripts/convert_hunyuan_video_to_diffusers.py "
                      "(HYVideo-T/2-cfgdistill)"),
    "cogvideox-5b": ("diffusers:CogVideoXTransformer3DModel", COGVIDEOX_5B,
                     "THUDM/CogVideoX-5b transformer/config.json"),
    "ltx-video": ("diffusers:LTXVideoTransformer3DModel", LTX_VIDEO, "Lightricks/LTX-Video transformer/config.json"),
    "wan2.1-vae": ("diffusers:AutoencoderKLWan", {}, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers vae/config.json"),
    "hunyuan-video-vae": ("diffusers:AutoencoderKLHunyuanVideo", {"tiling": True},
                          "hunyuanvideo-community/HunyuanVideo vae/config.json"),
    "cogvideox-vae": ("diffusers:AutoencoderKLCogVideoX", {"scaling_factor": 0.7},
                      "THUDM/CogVideoX-5b vae/config.json"),
    "ltx-video-vae": ("diffusers:AutoencoderKLLTXVideo", {}, "Lightricks/LTX-Video vae/config.json"),
}
ALL_PRESETS = {**PRESETS, **{name: (spec, cfg) for name, (spec, cfg, _) in DIT_PRESETS.items()}}
TEXT_TOKENS = 77
PROMPT_TOKENS = 512


@dataclass(frozen=True)
class Size:
    """Output pixels (height x width) and video frames one call makes; None where the model has none."""

    height: int | None = None
    width: int | None = None
    frames: int | None = None

    def latent(self, factor: int) -> tuple[int, int]:
        return self.height // factor, self.width // factor

    def latent_frames(self, compression: int) -> int:
        return (self.frames - 1) // compression + 1  # the first frame alone, then `compression` per latent


@dataclass(frozen=True)
class ModuleClass:
    """How one class is called: `inputs(model, size)` -> (module, args, kwargs); its default size."""

    inputs: Callable
    size: Size = Size()
    multiple: int = 1  # pixels a side must be a multiple of (vae factor x patch)


def load_config(spec: str, config: str) -> dict:
    """A preset's config (its class must match) or a JSON file of constructor keywords."""
    if config in ALL_PRESETS:
        preset_spec, cfg = ALL_PRESETS[config]
        if preset_spec != spec:
            raise UserError(f"--config {config} is a preset for {preset_spec}, not {spec}")
        return dict(cfg)
    path = Path(config)
    if not path.is_file():
        raise UserError(f"--config {config!r} is neither a preset ({', '.join(ALL_PRESETS)}) nor a file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a JSON config ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config is a JSON object of constructor keywords")
    return {k: v for k, v in data.items() if not k.startswith("_")}


class DecodeCall:
    """A VAE's decode as a module call, `decode(vae, z)` the path taken (the module holds the VAE)."""

    def __new__(cls, vae, decode):
        import torch

        class Decode(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.vae = vae

            def forward(self, z):
                return decode(self.vae, z)

        return Decode()


def VaeDecode(vae):  # noqa: N802 (reads as the module it makes)
    """AutoencoderKL.decode as a module call: post-quant conv, then the decoder."""
    return DecodeCall(vae, lambda v, z: v.decoder(v.post_quant_conv(z)))


def VideoDecode(vae):  # noqa: N802
    """A video VAE's own decode (frame-batched, cached or tiled as the class does it) as a module call."""
    return DecodeCall(vae, lambda v, z: v.decode(z, return_dict=False)[0])


# Example inputs per class: one call at batch 1 (with_batch repeats them); sizes in output pixels.
def unet_inputs(model, size: Size):
    import torch

    h, w = size.latent(8)  # [1, 4, H/8, W/8]
    return model, (torch.randn(1, model.config.in_channels, h, w), torch.tensor([500]),
                   torch.randn(1, TEXT_TOKENS, model.config.cross_attention_dim)), {}


def vae_inputs(model, size: Size):
    import torch

    h, w = size.latent(2 ** (len(model.config.block_out_channels) - 1))
    return VaeDecode(model), (torch.randn(1, model.config.latent_channels, h, w),), {}


def clip_inputs(model, size: Size):
    import torch

    return model, (torch.zeros(1, model.config.max_position_embeddings, dtype=torch.long),), {}


def llm_inputs(model, size: Size):
    """An LLM's prefill: the prompt's logits only at its last position, as generation computes them."""
    import torch

    return model, (torch.zeros(1, PROMPT_TOKENS, dtype=torch.long),), {"use_cache": False, "logits_to_keep": 1}


def flux_inputs(model, size: Size):
    import torch

    h, w = size.latent(16)  # 2x2 latent patches packed into the 64 channels: [1, H/16 * W/16, 64]
    tokens, text = h * w, 512  # T5-XXL prompt of FLUX.1-dev's pipeline (max_sequence_length 512)
    kwargs = {"guidance": torch.tensor([3.5])} if model.config.guidance_embeds else {}
    return model, (torch.randn(1, tokens, model.config.in_channels), torch.randn(1, text, 4096),
                   torch.randn(1, model.config.pooled_projection_dim), torch.tensor([1.0]),
                   torch.zeros(tokens, 3), torch.zeros(text, 3)), kwargs


def sd3_inputs(model, size: Size):
    import torch

    h, w = size.latent(8)  # [1, 16, H/8, W/8]; the prompt: 77 CLIP + 256 T5 tokens
    return model, (torch.randn(1, model.config.in_channels, h, w), torch.randn(1, 333, 4096),
                   torch.randn(1, model.config.pooled_projection_dim), torch.tensor([500])), {}


def pixart_inputs(model, size: Size):
    import torch

    h, w = size.latent(8)  # [1, 4, H/8, W/8]; PixArt-Sigma's T5 prompt is 300 tokens
    return model, (torch.randn(1, model.config.in_channels, h, w), torch.randn(1, 300, 4096), torch.tensor([500])), {
        "added_cond_kwargs": {"resolution": None, "aspect_ratio": None}}


def wan_inputs(model, size: Size):
    import torch

    h, w = size.latent(8)  # [1, 16, (F-1)/4+1, H/8, W/8]; a 512-token UMT5 prompt
    return model, (torch.randn(1, 16, size.latent_frames(4), h, w), torch.tensor([500]),
                   torch.randn(1, 512, model.config.text_dim)), {}


def hunyuan_inputs(model, size: Size):
    import torch

    h, w = size.latent(8)  # [1, 16, (F-1)/4+1, H/8, W/8]; 256 LLaVA-Llama prompt tokens, padding-masked
    kwargs = {"guidance": torch.tensor([6000.0])} if model.config.guidance_embeds else {}
    return model, (torch.randn(1, 16, size.latent_frames(4), h, w), torch.tensor([500]),
                   torch.randn(1, 256, model.config.text_embed_dim), torch.ones(1, 256, dtype=torch.long),
                   torch.randn(1, model.config.pooled_projection_dim)), kwargs


def cogvideox_inputs(model, size: Size):
    import torch

    h, w = size.latent(8)  # frames first: [1, (F-1)/4+1, 16, H/8, W/8]; a 226-token T5 prompt
    return model, (torch.randn(1, size.latent_frames(4), 16, h, w),
                   torch.randn(1, model.config.max_text_seq_length, model.config.text_embed_dim),
                   torch.tensor([500])), {}


def ltx_inputs(model, size: Size):
    import torch

    h, w = size.latent(32)  # patchified latents [1, ((F-1)/8+1) * H/32 * W/32, 128]; a 128-token T5 prompt
    f = size.latent_frames(8)
    return model, (torch.randn(1, f * h * w, model.config.in_channels), torch.randn(1, 128, 4096),
                   torch.tensor([500]), torch.ones(1, 128, dtype=torch.long)), {
        "num_frames": f, "height": h, "width": w}


def video_vae_inputs(factor: int, compression: int, channels: int):
    def inputs(model, size: Size):
        import torch

        h, w = size.latent(factor)  # [1, C, (F-1)/compression+1, H/factor, W/factor]
        return VideoDecode(model), (torch.randn(1, channels, size.latent_frames(compression), h, w),), {}

    return inputs


IMAGE, SD_SIZE, NO_SIZE = Size(1024, 1024), Size(512, 512), Size()
CLASSES = {  # module spec -> how it is called, at what default size
    "diffusers:UNet2DConditionModel": ModuleClass(unet_inputs, SD_SIZE, 8),
    "diffusers:AutoencoderKL": ModuleClass(vae_inputs, SD_SIZE, 8),
    "transformers:CLIPTextModel": ModuleClass(clip_inputs),
    "transformers:LlamaForCausalLM": ModuleClass(llm_inputs),
    "diffusers:FluxTransformer2DModel": ModuleClass(flux_inputs, IMAGE, 16),
    "diffusers:SD3Transformer2DModel": ModuleClass(sd3_inputs, IMAGE, 16),
    "diffusers:PixArtTransformer2DModel": ModuleClass(pixart_inputs, IMAGE, 16),
    "diffusers:WanTransformer3DModel": ModuleClass(wan_inputs, Size(480, 832, 81), 16),
    "diffusers:HunyuanVideoTransformer3DModel": ModuleClass(hunyuan_inputs, Size(720, 1280, 129), 16),
    "diffusers:CogVideoXTransformer3DModel": ModuleClass(cogvideox_inputs, Size(480, 720, 49), 16),
    "diffusers:LTXVideoTransformer3DModel": ModuleClass(ltx_inputs, Size(512, 768, 121), 32),
    "diffusers:AutoencoderKLWan": ModuleClass(video_vae_inputs(8, 4, 16), Size(480, 832, 81), 8),
    "diffusers:AutoencoderKLHunyuanVideo": ModuleClass(video_vae_inputs(8, 4, 16), Size(720, 1280, 129), 8),
    "diffusers:AutoencoderKLCogVideoX": ModuleClass(video_vae_inputs(8, 4, 16), Size(480, 720, 49), 8),
    "diffusers:AutoencoderKLLTXVideo": ModuleClass(video_vae_inputs(32, 8, 128), Size(512, 768, 121), 32),
}


def module_size(spec: str, height: int | None = None, width: int | None = None, frames: int | None = None) -> Size:
    """The class's default size with the knobs given; refuses knobs the class has no use for."""
    klass = module_class(spec)
    size = klass.size
    for knob, value in (("height", height), ("width", width), ("frames", frames)):
        if value is None:
            continue
        if getattr(size, knob) is None:
            raise UserError(f"--module {spec} takes no --{knob}")
        if not isinstance(value, int) or value < 1:
            raise UserError(f"--{knob} must be a positive integer, got {value!r}")
        if knob != "frames" and value % klass.multiple:
            raise UserError(f"--{knob} {value} of {spec} must be a multiple of {klass.multiple} pixels")
        size = replace(size, **{knob: value})
    return size


def module_class(spec: str) -> ModuleClass:
    if spec not in CLASSES:
        raise UserError(f"--module {spec!r} is not supported; supported: {', '.join(CLASSES)}")
    return CLASSES[spec]


def construct(spec: str, cfg: dict):
    """The model of a spec from constructor keywords (diffusers) or its transformers Config."""
    if spec.startswith("diffusers:"):
        import diffusers

        return getattr(diffusers, spec.split(":")[1])(**cfg)
    import transformers

    name = spec.split(":")[1]
    config = getattr(transformers, name.replace("ForCausalLM", "Config").replace("TextModel", "TextConfig"))
    config = config(**cfg)
    config._attn_implementation = "sdpa"
    return getattr(transformers, name)(config)


def build_module(spec: str, cfg: dict, size: Size | None = None):
    """(module, example inputs, keyword inputs) for one call at batch 1, built with fake tensors in fp16."""
    klass = module_class(spec)
    cfg = dict(cfg)
    tiling = bool(cfg.pop("tiling", False))
    try:
        model = construct(spec, cfg)
    except (TypeError, ValueError) as e:
        raise UserError(f"{spec}: the config does not build the model ({e})") from None
    model.eval()
    if tiling:
        model.enable_tiling()
    return klass.inputs(model, size or klass.size)


def with_batch(inputs: tuple, batch: int) -> tuple:
    import torch

    return tuple(t.repeat(batch, *[1] * (t.dim() - 1)) if isinstance(t, torch.Tensor) else t for t in inputs)


def module_graph(spec: str, config: str, batch: int = 1, height: int | None = None, width: int | None = None,
                 frames: int | None = None, cfg: dict | None = None):
    """The OpGraph of one call of a real model (built from a preset or config file, or `cfg` given) at a
    batch and an output size (pixels, frames; the class's default where None)."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from workloads.frontend import lower_module

    cfg = load_config(spec, config) if cfg is None else cfg
    size = module_size(spec, height, width, frames)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)  # fake parameters are made in fp16; .to() cannot swap them
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            module, inputs, kwargs = build_module(spec, cfg, size)
            return lower_module(module, *with_batch(inputs, batch), **kwargs)
    finally:
        torch.set_default_dtype(default)


PRESET_KNOBS = ("batch", "image_size", "height", "width", "frames")


def preset_pipeline(preset: str, **knobs):
    """A one-stage Pipeline of a module preset (a scenario's `workload: module:PRESET`), with the knobs
    batch, image_size or height/width (pixels) and frames; unknown presets and knobs are one-line errors."""
    from emulator.pipeline import Pipeline, Stage

    if preset not in ALL_PRESETS:
        raise UserError(f"unknown module preset {preset!r}; choose one of: {', '.join(ALL_PRESETS)}")
    unknown = [k for k in knobs if k not in PRESET_KNOBS]
    if unknown:
        raise UserError(f"module:{preset} takes the knobs {', '.join(PRESET_KNOBS)}, not {unknown[0]}")
    side = knobs.get("image_size")
    if side is not None and (knobs.get("height") is not None or knobs.get("width") is not None):
        raise UserError(f"module:{preset}: give image_size or height/width, not both")
    spec = ALL_PRESETS[preset][0]
    size = module_size(spec, knobs.get("height", side), knobs.get("width", side), knobs.get("frames"))
    batch = knobs.get("batch") or 1
    if not isinstance(batch, int) or batch < 1:
        raise UserError(f"module:{preset}: batch must be a positive integer, got {batch!r}")
    stage = Stage(preset, f"{spec} from preset {preset}, lowered on fake tensors",
                  lambda b: module_graph(spec, preset, b, size.height, size.width, size.frames), 1, batch)
    shown = {k: v for k, v in (("height", size.height), ("width", size.width), ("frames", size.frames)) if v}
    return Pipeline(f"module:{preset}", {"batch": batch, **shown}, (stage,))
