"""CogVideoX-5B text-to-video: T5-XXL, an expert-AdaLN 3-D DiT over joint text and video tokens, causal VAE.

Sources: THUDM/CogVideoX-5b transformer/config.json as diffusers' scripts/convert_cogvideox_to_diffusers.py
writes it for 5B (42 layers, 48 heads of 64 (width 3072), rotary positions, time_embed_dim 512, patch 2,
16 latent channels, text_embed_dim 4096, 226 text tokens; sample 49 frames at 60x90 latent) and
AutoencoderKLCogVideoX defaults (4x temporal, 8x spatial). Defaults from CogVideoXPipeline.__call__:
480x720 (the config's sample size x 8), 49 frames, 50 steps, guidance 6 as one batched call of
conditional and unconditional inputs. Frames: 1 + a multiple of 4 (the VAE's temporal factor; CogVideoX
1.5's 2-frame temporal patches, which need 8k + 1, do not apply to 5B). Published size: 5B (model name;
CogVideoX paper, arXiv 2408.06072).
"""

from __future__ import annotations

from workloads.blocks import video_vae
from workloads.blocks.text_encoders import T5_XXL
from workloads.blocks.video_dit import VideoDiTSpec, check_video
from workloads.config import WorkloadConfig
from workloads.video_stages import latent_grid, t5_stage, transformer_stage, vae_stage
from workloads.workload import Workload

TRANSFORMER = VideoDiTSpec("cogvideox", 3072, 48, 12288, 42, 4096, time_dim=512)
TEXT_TOKENS = 226
VAE = video_vae.COGVIDEOX
SPATIAL = VAE.space_factor * TRANSFORMER.patch[1]


def stages(cfg: WorkloadConfig):
    grid = latent_grid(cfg, VAE)
    return (t5_stage(cfg, T5_XXL, TEXT_TOKENS),
            transformer_stage(cfg, TRANSFORMER, f"CogVideoX-5B DiT, 42 layers x 3072, {TEXT_TOKENS} text", grid,
                              TEXT_TOKENS),
            vae_stage(cfg, VAE, grid))


def check(cfg: WorkloadConfig) -> None:
    check_video("cogvideox-5b", cfg.frames, cfg.height, cfg.width, VAE.time_factor, SPATIAL)


WORKLOAD = Workload(
    name="cogvideox-5b",
    klass="text-to-video, latent diffusion transformer",
    description="CogVideoX-5B: T5-XXL, 42-layer expert-AdaLN DiT over joint text + video tokens, causal VAE",
    defaults=WorkloadConfig(height=480, width=720, frames=49, steps=50, guidance_mode="batched", dtype="bf16"),
    stages=stages,
    check=check,
)
