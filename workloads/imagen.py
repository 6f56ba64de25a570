"""Imagen: T5-XXL text encoder, base UNet 64x64, super-resolution UNets 64->256 and 256->1024.

Sources and choices:
- Base UNet: the study's Table I (512 channels x [1, 2, 4, 4], 3 ResNet blocks
  per level, self- and text cross-attention at resolutions 32, 16, 8, 64
  channels per head), laid out as an ADM/DeepFloyd-IF UNet: an attention layer
  after every ResNet block of an attending level and in the middle. Attention
  layers carry no MLP (as in ADM's attention block).
- Super-resolution: Imagen's Efficient U-Net with the sizes of the
  imagen-pytorch reproduction (SRUnet256 and SRUnet1024 presets in
  lucidrains/imagen-pytorch imagen_pytorch.py @00f4bab: 128 x [1, 2, 4, 8]
  channels, [2, 4, 8, 8] ResNet blocks, memory-efficient layout). 64->256
  self- and cross-attends at its lowest level and in the middle; 256->1024 has
  no self-attention, only text cross-attention at its lowest level and in the
  middle (the paper removes self-attention from it). The input is the noisy
  image concatenated with the up-sampled low-resolution image.
- Not modelled: imagen-pytorch's global-context gates, perceiver text pooling,
  the time tokens appended to attention keys, and the noise-level conditioning
  of the SR stages (all small next to the convolutions).
- Steps: the DeepFloyd IF cascade defaults (diffusers IFPipeline 100,
  IFSuperResolutionPipeline 50, stage III upscaler 75); `steps` sets the base
  stage. Text: 128 T5 tokens. Guidance at every stage.
"""

from __future__ import annotations

from workloads.blocks import text_encoders
from workloads.blocks.spatial_transformer import AttentionLayer
from workloads.blocks.text_encoders import T5_XXL
from workloads.blocks.unet import UNetSpec, build_unet
from workloads.config import WorkloadConfig
from workloads.workload import Workload, graph_stage, guided

SELF_CROSS = AttentionLayer(head_dim=64, ff_mult=0)
CROSS_ONLY = AttentionLayer(head_dim=64, ff_mult=0, self_attention=False)

BASE = UNetSpec(
    in_channels=3,
    out_channels=3,
    channels=(512, 1024, 2048, 2048),
    blocks=(3, 3, 3, 3),
    attention=(None, SELF_CROSS, SELF_CROSS, SELF_CROSS),
    mid_attention=SELF_CROSS,
    context_dim=T5_XXL.layer.dim,
)


def efficient_unet(attention: AttentionLayer, context_dim: int, in_channels: int = 6) -> UNetSpec:
    """Imagen's Efficient U-Net for super-resolution, attending only at its lowest level."""
    return UNetSpec(
        in_channels=in_channels,
        out_channels=3,
        channels=(128, 256, 512, 1024),
        blocks=(2, 4, 8, 8),
        attention=(None, None, None, attention),
        mid_attention=attention,
        context_dim=context_dim,
        norm_groups=8,
        downsample_first=True,
    )


SR_256 = efficient_unet(SELF_CROSS, T5_XXL.layer.dim)
SR_1024 = efficient_unet(CROSS_ONLY, T5_XXL.layer.dim)
SR_STEPS = {"sr_256": 50, "sr_1024": 75}


def super_resolve(b, spec: UNetSpec, batch: int, low: int, high: int, text_tokens: int, frames: int = 0):
    """One step of an SR UNet: noisy [N, 3, high, high] concatenated with the low-res image up-sampled."""
    n = batch * max(frames, 1)
    lowres = b.upsample("upsample_lowres", b.input(n, 3, low, low), factor=high // low)
    sample = b.concat("concat_lowres", b.input(n, 3, high, high), lowres)
    return build_unet(b, spec, batch, high, high, text_tokens, frames, sample=sample)


def stages(cfg: WorkloadConfig):
    t = cfg.prompt_tokens
    return (
        graph_stage("text_encoder", T5_XXL.name, cfg, 1, guided(cfg),
                    lambda b, n: text_encoders.encode(b, T5_XXL, n, t)),
        graph_stage("base_unet", "base UNet 64x64 (Table I)", cfg, cfg.steps, guided(cfg),
                    lambda b, n: build_unet(b, BASE, n, 64, 64, t)),
        graph_stage("sr_256", "Efficient U-Net 64->256", cfg, SR_STEPS["sr_256"], guided(cfg),
                    lambda b, n: super_resolve(b, SR_256, n, 64, 256, t)),
        graph_stage("sr_1024", "Efficient U-Net 256->1024, no self-attention", cfg, SR_STEPS["sr_1024"],
                    guided(cfg), lambda b, n: super_resolve(b, SR_1024, n, 256, 1024, t)),
    )


WORKLOAD = Workload(
    name="imagen",
    klass="text-to-image, pixel diffusion cascade",
    description="Imagen: T5-XXL, base UNet 64x64, Efficient U-Net SR to 256 and 1024",
    defaults=WorkloadConfig(steps=100, prompt_tokens=128, guidance=True),
    stages=stages,
)
