"""The real models `calibration validate` times, built from their published configs with random weights.

diffusers' UNet2DConditionModel and AutoencoderKL with the SD v1.5 configs,
UNet3DConditionModel with its default text-to-video config, and transformers'
LlamaForCausalLM with the LLaMA-2-7B config (`workloads.modules`), at full size
on a GPU and reduced on a CPU (resolution, frames, batch, depth: stated per
case). Attention 'flash' runs PyTorch SDPA (diffusers' AttnProcessor2_0,
transformers' "sdpa"), 'baseline' the unfused matmul-softmax-matmul
(AttnProcessor, "eager").
"""

from __future__ import annotations

from dataclasses import dataclass

from workloads.modules import (  # the configs the suite is built from
    LLAMA2_7B,
    SD_UNET,
    SD_VAE,
)

UNET3D = {"sample_size": 32, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
              "block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 1024, "attention_head_dim": 64,
              "norm_num_groups": 32}  # diffusers' defaults: a ModelScope-class text-to-video UNet
MODELS = ("sd-unet", "sd-vae-decoder", "unet3d", "llama2-7b-prefill", "llama2-7b-decode")


@dataclass
class Case:
    name: str
    batch: int
    size: int  # image side, or tokens
    attention: str
    frames: int = 0
    layers: int = 0  # LLM depth (0: the full 32)

    @property
    def label(self) -> str:
        parts = [self.name, f"b{self.batch}", f"{self.size}"]
        parts += [f"f{self.frames}"] if self.frames else []
        parts += [f"{self.layers}L"] if self.layers else []
        return "-".join(parts)


def default_cases(device: str, models: tuple[str, ...] = MODELS,
                  attentions: tuple[str, ...] = ("flash", "baseline")) -> list[Case]:
    if device == "cuda":  # full size, fp16
        sizes = [Case("sd-unet", 2, 512, ""), Case("sd-unet", 8, 512, ""), Case("sd-vae-decoder", 1, 512, ""),
                 Case("unet3d", 1, 256, "", frames=16), Case("llama2-7b-prefill", 1, 128, ""),
                 Case("llama2-7b-prefill", 1, 2048, ""), Case("llama2-7b-decode", 1, 2048, "")]
    else:  # a 2-core CPU in fp32: lower resolution, fewer frames, fewer LLM layers
        sizes = [Case("sd-unet", 1, 256, ""), Case("sd-vae-decoder", 1, 128, ""), Case("unet3d", 1, 128, "", frames=4),
                 Case("llama2-7b-prefill", 1, 128, "", layers=2), Case("llama2-7b-decode", 1, 512, "", layers=2)]
    return [Case(c.name, c.batch, c.size, a, c.frames, c.layers) for a in attentions for c in sizes
            if c.name in models]


def build(case: Case, device: str, dtype):
    """(module, inputs, kwargs, a call of it, a setup to run before each lowering) for one case."""
    import torch

    if case.name.startswith("llama"):
        return _llama(case, device, dtype)
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet3DConditionModel
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from workloads.modules import VaeDecode

    processor = AttnProcessor2_0() if case.attention == "flash" else AttnProcessor()
    latent = case.size // 8
    with torch.device(device):
        if case.name == "sd-unet":
            model = UNet2DConditionModel(**SD_UNET).to(dtype).eval()
            inputs = (torch.randn(case.batch, 4, latent, latent, dtype=dtype), torch.tensor([500] * case.batch),
                      torch.randn(case.batch, 77, 768, dtype=dtype))
        elif case.name == "unet3d":
            model = UNet3DConditionModel(**UNET3D).to(dtype).eval()
            inputs = (torch.randn(case.batch, 4, case.frames, latent, latent, dtype=dtype),
                      torch.tensor([500] * case.batch), torch.randn(case.batch, 77, 1024, dtype=dtype))
        else:
            vae = AutoencoderKL(**SD_VAE).to(dtype).eval()
            vae.set_attn_processor(processor)
            model = VaeDecode(vae)
            inputs = (torch.randn(case.batch, 4, latent, latent, dtype=dtype),)
        if case.name != "sd-vae-decoder":
            model.set_attn_processor(processor)
    return model, inputs, {}, lambda: model(*inputs), None


def _llama(case: Case, device: str, dtype):
    import torch
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{**LLAMA2_7B, "num_hidden_layers": case.layers or LLAMA2_7B["num_hidden_layers"]})
    config._attn_implementation = "sdpa" if case.attention == "flash" else "eager"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build the weights in the working precision directly (13.5 GB, not 27)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    ids = torch.randint(0, 32000, (case.batch, case.size), device=device)
    if case.name == "llama2-7b-prefill":
        kwargs = {"logits_to_keep": 1, "use_cache": False}
        return model, (ids,), kwargs, lambda: model(ids, **kwargs), None
    # Decode one token against a cache of size - 1 positions; the cache is cut back after each step.
    cache = DynamicCache(config=config)
    with torch.no_grad():
        model(ids[:, : case.size - 1], past_key_values=cache, use_cache=True)
    token = ids[:, -1:]
    kwargs = {"past_key_values": cache, "use_cache": True, "logits_to_keep": 1}

    def step():
        out = model(token, **kwargs)
        cache.crop(-1)  # drop the token just added
        return out

    return model, (token,), kwargs, step, lambda: cache.crop(-1)  # the lowering ran one step too
