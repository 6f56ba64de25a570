"""LTX-Video (0.9.0, 1.9B) text-to-video: T5-XXL, a DiT with T5 cross-attention on 1x1x1 patches of a
32x-compressed latent, and a VAE decoder 32x in space and 8x in time.

Sources: Lightricks/LTX-Video transformer/config.json, the default config of diffusers'
LTXVideoTransformer3DModel (128 latent channels, 28 layers, 32 heads of 64 (width 2048), cross_attention_dim
2048, caption_channels 4096, qk_norm rms_norm_across_heads, patch 1x1x1); VAE 0.9.0 config from diffusers'
scripts/convert_ltx_to_diffusers.py. Defaults: 480x704 and 161 frames (the LTX-Video model card's and
diffusers' LTX docs example; LTXPipeline's signature default height is 512), 50 steps, 128 T5 tokens
(LTXPipeline max_sequence_length), guidance 3 as one batched call. Frames: 1 + a multiple of 8; sides:
multiples of 32. Published size: 1.9B parameters (LTX-Video paper, arXiv 2501.00103).
"""

from __future__ import annotations

from workloads.blocks import video_vae
from workloads.blocks.text_encoders import T5_XXL
from workloads.blocks.video_dit import VideoDiTSpec, check_video
from workloads.config import WorkloadConfig
from workloads.video_stages import latent_grid, t5_stage, transformer_stage, vae_stage
from workloads.workload import Workload

TRANSFORMER = VideoDiTSpec("ltx", 2048, 32, 8192, 28, 4096, in_channels=128, patch=(1, 1, 1))
TEXT_TOKENS = 128
VAE = video_vae.LTX


def stages(cfg: WorkloadConfig):
    grid = latent_grid(cfg, VAE)
    return (t5_stage(cfg, T5_XXL, TEXT_TOKENS),
            transformer_stage(cfg, TRANSFORMER, "LTX-Video DiT, 28 layers x 2048", grid, TEXT_TOKENS),
            vae_stage(cfg, VAE, grid))


def check(cfg: WorkloadConfig) -> None:
    check_video("ltx-video", cfg.frames, cfg.height, cfg.width, VAE.time_factor, VAE.space_factor)


WORKLOAD = Workload(
    name="ltx-video",
    klass="text-to-video, latent diffusion transformer",
    description="LTX-Video 0.9.0: T5-XXL, 28-layer DiT on a 32x-compressed latent, 32x/8x video VAE decoder",
    defaults=WorkloadConfig(height=480, width=704, frames=161, steps=50, guidance_mode="batched", dtype="bf16"),
    stages=stages,
    check=check,
)
