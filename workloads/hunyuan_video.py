"""HunyuanVideo text-to-video: LLaVA-LLaMA-3-8B + CLIP-L text, a 13B dual/single-stream 3-D DiT, causal VAE.

Sources: hunyuanvideo-community/HunyuanVideo transformer/config.json, which is the default config of
diffusers' HunyuanVideoTransformer3DModel (scripts/convert_hunyuan_video_to_diffusers.py builds it with no
arguments): 24 heads of 128 (width 3072), MLP ratio 4, 20 dual-stream and 40 single-stream blocks, 2
token-refiner blocks, patch (1, 2, 2), 16 latent channels, text_embed_dim 4096, pooled CLIP 768, guidance
embedding. VAE: AutoencoderKLHunyuanVideo defaults (4x temporal, 8x spatial). Defaults from diffusers'
HunyuanVideoPipeline.__call__ and the HunyuanVideo README: 720x1280, 129 frames, 50 steps, guidance
distilled (embedded guidance scale 6.0, true CFG off: one transformer pass per step); the LLM encodes
256 + 95 template tokens, CLIP-L 77. Published size: 13B parameters (HunyuanVideo paper, arXiv 2412.03603).
"""

from __future__ import annotations

from workloads.blocks import text_encoders, video_vae
from workloads.blocks.text_encoders import CLIP_L
from workloads.blocks.video_dit import VideoDiTSpec, check_video
from workloads.blocks.video_text_encoders import LLAVA_LLAMA3_8B, LLM_TEMPLATE_TOKENS, LLM_TOKENS, encode_llm
from workloads.config import WorkloadConfig
from workloads.video_stages import latent_grid, text_stage, transformer_stage, vae_stage
from workloads.workload import Workload

TRANSFORMER = VideoDiTSpec("hunyuan", 3072, 24, 12288, 20, 4096, single_layers=40, refiner_layers=2,
                           pooled_dim=768)
VAE = video_vae.HUNYUAN
SPATIAL = VAE.space_factor * TRANSFORMER.patch[1]


def stages(cfg: WorkloadConfig):
    grid = latent_grid(cfg, VAE)
    llm_tokens = LLM_TOKENS + LLM_TEMPLATE_TOKENS
    return (
        text_stage(cfg, "text_encoder", f"{LLAVA_LLAMA3_8B.name}, {llm_tokens} tokens",
                   lambda b, n: encode_llm(b, LLAVA_LLAMA3_8B, n, llm_tokens)),
        text_stage(cfg, "text_encoder_2", CLIP_L.name,
                   lambda b, n: text_encoders.encode(b, CLIP_L, n, CLIP_L.max_tokens)),
        transformer_stage(cfg, TRANSFORMER, "HunyuanVideo DiT, 20 dual + 40 single blocks x 3072", grid, LLM_TOKENS),
        vae_stage(cfg, VAE, grid),
    )


def check(cfg: WorkloadConfig) -> None:
    check_video("hunyuanvideo", cfg.frames, cfg.height, cfg.width, VAE.time_factor, SPATIAL)


WORKLOAD = Workload(
    name="hunyuanvideo",
    klass="text-to-video, latent diffusion transformer",
    description="HunyuanVideo: LLaVA-LLaMA-3-8B + CLIP-L, 13B dual/single-stream 3-D DiT, causal video VAE",
    defaults=WorkloadConfig(height=720, width=1280, frames=129, steps=50, guidance_mode="distilled", dtype="bf16"),
    stages=stages,
    check=check,
)
