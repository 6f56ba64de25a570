"""Stable Diffusion v1.5: CLIP ViT-L/14 text encoder, UNet over the image/8 latent, VAE decoder.

Source: CompVis/stable-diffusion configs/stable-diffusion/v1-inference.yaml
(UNet: 320 x [1, 2, 4, 4] channels, 2 ResNet blocks per level, attention at the
three highest-resolution levels and in the middle, 8 heads, transformer depth 1,
context 768; VAE: 128 x [1, 2, 4, 4], 2 ResNet blocks, latent 4 channels, f=8),
as diffusers' UNet2DConditionModel and AutoencoderKL implement it. The text
encoder always runs on CLIP's 77 padded tokens. Defaults: 512x512, 50 steps
(diffusers' StableDiffusionPipeline default), classifier-free guidance.
"""

from __future__ import annotations

from emulator import similarity
from emulator.ops import DTYPE_BYTES
from workloads.blocks import text_encoders
from workloads.blocks.conv_decoder import ConvDecoderSpec, decode
from workloads.blocks.spatial_transformer import AttentionLayer
from workloads.blocks.text_encoders import CLIP_L
from workloads.blocks.unet import UNetSpec, build_unet, unet_similarity_levels
from workloads.config import WorkloadConfig
from workloads.workload import Workload, graph_stage, guided

ATTN = AttentionLayer(heads=8)
UNET = UNetSpec(
    in_channels=4,
    out_channels=4,
    channels=(320, 640, 1280, 1280),
    blocks=(2, 2, 2, 2),
    attention=(ATTN, ATTN, ATTN, None),
    mid_attention=ATTN,
    context_dim=768,
)
VAE = ConvDecoderSpec(latent_channels=4, channels=(128, 256, 512, 512), resnets=3, mid_attention=True)
LATENT_FACTOR = 8
TEXT_TOKENS = 77


def latent_diffusion_stages(cfg: WorkloadConfig, encoders, unet: UNetSpec, vae: ConvDecoderSpec, label: str):
    """Text encoder(s) once, UNet `steps` times, VAE decoder once: the latent-diffusion pipeline."""
    latent = cfg.image_size // LATENT_FACTOR

    def encode(b, n):
        for spec in encoders:
            with b.scope(spec.name.split()[0].lower()):
                text_encoders.encode(b, spec, n, TEXT_TOKENS)

    def denoise(b, n):
        build_unet(b, unet, n, latent, latent, TEXT_TOKENS)

    def formula(n):
        levels = unet_similarity_levels(unet, latent, latent)
        return similarity.level_bytes(levels, TEXT_TOKENS, n, DTYPE_BYTES[cfg.dtype])

    return (
        graph_stage("text_encoder", " + ".join(s.name for s in encoders), cfg, 1, guided(cfg), encode),
        graph_stage("unet", f"{label} UNet, latent {latent}x{latent}", cfg, cfg.steps, guided(cfg), denoise,
                    similarity_formula=formula),
        graph_stage("vae_decoder", f"VAE decoder {latent}x{latent} -> {cfg.image_size}x{cfg.image_size}", cfg, 1,
                    cfg.batch, lambda b, n: decode(b, vae, b.input(n, vae.latent_channels, latent, latent))),
    )


WORKLOAD = Workload(
    name="stable-diffusion",
    klass="text-to-image, latent diffusion",
    description="Stable Diffusion v1.5: CLIP text encoder, UNet on the image/8 latent, VAE decoder",
    defaults=WorkloadConfig(image_size=512, steps=50, guidance=True),
    stages=lambda cfg: latent_diffusion_stages(cfg, [CLIP_L], UNET, VAE, "SD v1.5"),
    image_sizes=range(64, 1025, 64),
)
