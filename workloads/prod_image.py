"""Prod Image: a labelled stand-in for the study's production text-to-image model.

The study's production latent diffusion model is not public. This workload is
SDXL base 1.0 at 1024x1024, an openly documented model of the same class.
Source: Stability-AI/generative-models configs/inference/sd_xl_base.yaml
@3df5c81 and the diffusers config of stable-diffusion-xl-base-1.0: UNet 320 x
[1, 2, 4] channels, 2 ResNet blocks per level, no attention at the
highest-resolution level, transformer depth 2 and 10 at the other two and 10
in the middle, 64 channels per head, linear projections, context 2048 (CLIP
ViT-L/14 768 + OpenCLIP ViT-bigG/14 1280 concatenated), pooled-text and
size/crop embeddings (2816 features) added to the time embedding; the SD VAE
decoder. Defaults: 50 steps (diffusers' default), classifier-free guidance.
"""

from __future__ import annotations

from workloads.blocks.spatial_transformer import AttentionLayer
from workloads.blocks.text_encoders import CLIP_L, OPENCLIP_BIGG
from workloads.blocks.unet import UNetSpec
from workloads.config import WorkloadConfig
from workloads.stable_diffusion import VAE, latent_diffusion_stages
from workloads.workload import Workload

UNET = UNetSpec(
    in_channels=4,
    out_channels=4,
    channels=(320, 640, 1280),
    blocks=(2, 2, 2),
    attention=(
        None,
        AttentionLayer(head_dim=64, depth=2, linear_projection=True),
        AttentionLayer(head_dim=64, depth=10, linear_projection=True),
    ),
    mid_attention=AttentionLayer(head_dim=64, depth=10, linear_projection=True),
    context_dim=CLIP_L.layer.dim + OPENCLIP_BIGG.layer.dim,
    add_embed_dim=OPENCLIP_BIGG.projection + 6 * 256,
)

WORKLOAD = Workload(
    name="prod-image",
    klass="text-to-image, production latent diffusion (stand-in)",
    description="Stand-in for the study's non-public production model: SDXL-base-class latent diffusion at 1024x1024",
    defaults=WorkloadConfig(image_size=1024, steps=50, guidance=True),
    stages=lambda cfg: latent_diffusion_stages(cfg, [CLIP_L, OPENCLIP_BIGG], UNET, VAE, "SDXL-class"),
    image_sizes=range(256, 2049, 64),
)
