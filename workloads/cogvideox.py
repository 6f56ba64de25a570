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

from workloads.blocks import text_encoders, video_vae
from workloads.blocks.text_encoders import T5_XXL
from workloads.blocks.video_dit import VideoDiTSpec, check_video, denoise
from workloads.config import WorkloadConfig
from workloads.workload import Workload, graph_stage, guided_calls

TRANSFORMER = VideoDiTSpec("cogvideox", 3072, 48, 12288, 42, 4096, time_dim=512)
TEXT_TOKENS = 226
VAE = video_vae.COGVIDEOX
SPATIAL = VAE.space_factor * TRANSFORMER.patch[1]


def stages(cfg: WorkloadConfig):
    f, h, w = (cfg.frames - 1) // VAE.time_factor + 1, cfg.height // VAE.space_factor, cfg.width // VAE.space_factor
    calls, batch = guided_calls(cfg, cfg.steps)
    text_calls, text_batch = guided_calls(cfg, 1)
    tokens = TRANSFORMER.tokens(f, h, w)
    return (
        graph_stage("text_encoder", f"{T5_XXL.name}, {TEXT_TOKENS} tokens", cfg, text_calls, text_batch,
                    lambda b, n: text_encoders.encode(b, T5_XXL, n, TEXT_TOKENS)),
        graph_stage("transformer", f"CogVideoX-5B DiT, 42 layers x 3072, {TEXT_TOKENS} text + {tokens} video tokens",
                    cfg, calls, batch, lambda b, n: denoise(b, TRANSFORMER, n, f, h, w, TEXT_TOKENS)),
        graph_stage("vae_decoder", f"{VAE.name} -> {cfg.frames} frames at {cfg.height}x{cfg.width}", cfg, 1,
                    cfg.batch, lambda b, n: video_vae.decode(b, VAE, b.input(n, VAE.latent_channels, f, h, w))),
    )


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
