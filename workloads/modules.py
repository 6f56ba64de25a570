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
from pathlib import Path

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

PRESETS = {  # name -> (module spec, constructor config)
    "sd-v1.5-unet": ("diffusers:UNet2DConditionModel", SD_UNET),
    "sd-vae-decoder": ("diffusers:AutoencoderKL", SD_VAE),
    "clip-vit-l14-text": ("transformers:CLIPTextModel", CLIP_L_TEXT),
    "llama2-7b": ("transformers:LlamaForCausalLM", LLAMA2_7B),
}
CLASSES = ("diffusers:UNet2DConditionModel", "diffusers:AutoencoderKL", "transformers:CLIPTextModel",
           "transformers:LlamaForCausalLM")
TEXT_TOKENS = 77
PROMPT_TOKENS = 512


def load_config(spec: str, config: str) -> dict:
    """A preset's config (its class must match) or a JSON file of constructor keywords."""
    if config in PRESETS:
        preset_spec, cfg = PRESETS[config]
        if preset_spec != spec:
            raise UserError(f"--config {config} is a preset for {preset_spec}, not {spec}")
        return dict(cfg)
    path = Path(config)
    if not path.is_file():
        raise UserError(f"--config {config!r} is neither a preset ({', '.join(PRESETS)}) nor a file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not a JSON config ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: a config is a JSON object of constructor keywords")
    return {k: v for k, v in data.items() if not k.startswith("_")}


class VaeDecode:
    """AutoencoderKL.decode as a module call: post-quant conv, then the decoder."""

    def __new__(cls, vae):
        import torch

        class Decode(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.vae = vae

            def forward(self, z):
                return self.vae.decoder(self.vae.post_quant_conv(z))

        return Decode()


def build_module(spec: str, cfg: dict):
    """(module, example inputs, keyword inputs) for one call at batch 1, built with fake tensors in fp16."""
    if spec not in CLASSES:
        raise UserError(f"--module {spec!r} is not supported; supported: {', '.join(CLASSES)}")
    import torch

    try:
        if spec.startswith("diffusers:"):
            import diffusers

            model = getattr(diffusers, spec.split(":")[1])(**cfg)
        else:
            import transformers

            name = spec.split(":")[1]
            config = getattr(transformers, name.replace("ForCausalLM", "Config").replace("TextModel", "TextConfig"))
            config = config(**cfg)
            config._attn_implementation = "sdpa"
            model = getattr(transformers, name)(config)
    except (TypeError, ValueError) as e:
        raise UserError(f"{spec}: the config does not build the model ({e})") from None
    model.eval()
    if spec.endswith("UNet2DConditionModel"):
        size = cfg.get("sample_size", 64)
        inputs = (torch.randn(1, model.config.in_channels, size, size), torch.tensor([500]),
                  torch.randn(1, TEXT_TOKENS, model.config.cross_attention_dim))
        return model, inputs, {}
    if spec.endswith("AutoencoderKL"):
        latent = 512 // 2 ** (len(model.config.block_out_channels) - 1)
        return VaeDecode(model), (torch.randn(1, model.config.latent_channels, latent, latent),), {}
    if spec.endswith("CLIPTextModel"):
        return model, (torch.zeros(1, model.config.max_position_embeddings, dtype=torch.long),), {}
    # An LLM's prefill: the prompt's logits only at its last position, as generation computes them.
    return model, (torch.zeros(1, PROMPT_TOKENS, dtype=torch.long),), {"use_cache": False, "logits_to_keep": 1}


def with_batch(inputs: tuple, batch: int) -> tuple:
    import torch

    return tuple(t.repeat(batch, *[1] * (t.dim() - 1)) if isinstance(t, torch.Tensor) else t for t in inputs)


def module_graph(spec: str, config: str, batch: int = 1):
    """The OpGraph of one call of a real model (built from a preset or config file) at a batch."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from workloads.frontend import lower_module

    cfg = load_config(spec, config)
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float16)  # fake parameters are made in fp16; .to() cannot swap them
    try:
        with FakeTensorMode(allow_non_fake_inputs=True):
            module, inputs, kwargs = build_module(spec, cfg)
            return lower_module(module, *with_batch(inputs, batch), **kwargs)
    finally:
        torch.set_default_dtype(default)
