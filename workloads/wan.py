"""Wan 2.1 text-to-video, 1.3B and 14B: umT5-XXL, a 3-D DiT over (1, 2, 2) patches, the Wan causal video VAE.

Sources: transformer configs of Wan-AI/Wan2.1-T2V-1.3B-Diffusers and -14B-Diffusers as
diffusers' scripts/convert_wan_to_diffusers.py writes them (1.3B: 30 layers, 12 heads of 128, FFN 8960;
14B: 40 layers, 40 heads of 128, FFN 13824; both patch (1, 2, 2), 16 latent channels, text_dim 4096,
qk_norm rms_norm_across_heads, cross_attn_norm) and the original repository's configs (wan/configs/
wan_t2v_1_3B.py, wan_t2v_14B.py: vae_stride (4, 8, 8), umT5-XXL text encoder). Defaults from diffusers'
WanPipeline.__call__: 480x832, 81 frames, 50 steps, 512 text tokens, guidance 5.0 run as two transformer
calls per step (conditional, then unconditional). Parameter figures published: 1.3B and 14B (the model
names, Wan README and paper arXiv 2503.20314).
"""

from __future__ import annotations

from workloads.blocks import video_vae
from workloads.blocks.video_dit import VideoDiTSpec, check_video
from workloads.blocks.video_text_encoders import UMT5_TOKENS, UMT5_XXL
from workloads.config import WorkloadConfig
from workloads.video_stages import latent_grid, t5_stage, transformer_stage, vae_stage
from workloads.workload import Workload

WAN_1_3B = VideoDiTSpec("wan", 1536, 12, 8960, 30, 4096)
WAN_14B = VideoDiTSpec("wan", 5120, 40, 13824, 40, 4096)
VAE = video_vae.WAN
SPATIAL = VAE.space_factor * WAN_14B.patch[1]  # 16 pixels per token side


def stages_for(spec: VideoDiTSpec, size: str):
    def stages(cfg: WorkloadConfig):
        grid = latent_grid(cfg, VAE)
        return (t5_stage(cfg, UMT5_XXL, UMT5_TOKENS),
                transformer_stage(cfg, spec, f"Wan 2.1 {size} DiT, {spec.layers} layers x {spec.dim}", grid,
                                  UMT5_TOKENS),
                vae_stage(cfg, VAE, grid))

    return stages


def check(cfg: WorkloadConfig) -> None:
    check_video("wan2.1", cfg.frames, cfg.height, cfg.width, VAE.time_factor, SPATIAL)


DEFAULTS = WorkloadConfig(height=480, width=832, frames=81, steps=50, guidance_mode="two-calls", dtype="bf16")
WAN_1_3B_WORKLOAD = Workload(
    name="wan2.1-t2v-1.3b",
    klass="text-to-video, latent diffusion transformer",
    description="Wan 2.1 T2V 1.3B: umT5-XXL, 30-layer 3-D DiT with text cross-attention, causal video VAE",
    defaults=DEFAULTS,
    stages=stages_for(WAN_1_3B, "1.3B"),
    check=check,
)
WAN_14B_WORKLOAD = Workload(
    name="wan2.1-t2v-14b",
    klass="text-to-video, latent diffusion transformer",
    description="Wan 2.1 T2V 14B: umT5-XXL, 40-layer 3-D DiT with text cross-attention, causal video VAE",
    defaults=DEFAULTS,
    stages=stages_for(WAN_14B, "14B"),
    check=check,
)
