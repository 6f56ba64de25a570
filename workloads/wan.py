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

from workloads.blocks import text_encoders, video_vae
from workloads.blocks.video_dit import VideoDiTSpec, check_video, denoise
from workloads.blocks.video_text_encoders import UMT5_TOKENS, UMT5_XXL
from workloads.config import WorkloadConfig
from workloads.workload import Workload, graph_stage, guided_calls

WAN_1_3B = VideoDiTSpec("wan", 1536, 12, 8960, 30, 4096)
WAN_14B = VideoDiTSpec("wan", 5120, 40, 13824, 40, 4096)
VAE = video_vae.WAN
SPATIAL = VAE.space_factor * WAN_14B.patch[1]  # 16 pixels per token side


def latent(cfg: WorkloadConfig) -> tuple[int, int, int]:
    return (cfg.frames - 1) // VAE.time_factor + 1, cfg.height // VAE.space_factor, cfg.width // VAE.space_factor


def stages_for(spec: VideoDiTSpec, size: str):
    def stages(cfg: WorkloadConfig):
        f, h, w = latent(cfg)
        calls, batch = guided_calls(cfg, cfg.steps)
        text_calls, text_batch = guided_calls(cfg, 1)
        tokens = spec.tokens(f, h, w)
        return (
            graph_stage("text_encoder", f"{UMT5_XXL.name}, {UMT5_TOKENS} tokens", cfg, text_calls, text_batch,
                        lambda b, n: text_encoders.encode(b, UMT5_XXL, n, UMT5_TOKENS)),
            graph_stage("transformer", f"Wan 2.1 {size} DiT, {spec.layers} layers x {spec.dim}, {tokens} video tokens",
                        cfg, calls, batch, lambda b, n: denoise(b, spec, n, f, h, w, UMT5_TOKENS)),
            graph_stage("vae_decoder", f"{VAE.name} -> {cfg.frames} frames at {cfg.height}x{cfg.width}", cfg, 1,
                        cfg.batch, lambda b, n: video_vae.decode(b, VAE, b.input(n, VAE.latent_channels, f, h, w))),
        )

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
