"""Make-A-Video: spatiotemporal diffusion UNet, frame interpolation, spatiotemporal and spatial super-resolution.

Structure from the Make-A-Video paper (arXiv 2209.14792) as the study's digest
states it: a decoder D^t generating 16 frames at 64x64, a frame interpolation
network ^F (16 -> 5 * (16 - 1) + 1 = 76 frames), a spatiotemporal
super-resolution network SR^t_l to 256x256 and a per-frame spatial
super-resolution network SR_h to 768x768. Pseudo-3D convolution (every 3x3
conv of a ResNet block followed by a 1-d conv over frames) and pseudo-3D
attention (every spatial self-attention layer followed by a temporal one).

The paper gives no layer sizes, so choices, following the digest's
"SD-like UNet turned spatiotemporal": D^t and ^F are SD v1.5's UNet run in
pixel space (3 input channels; ^F takes 7: noisy frames, masked frames, mask)
with cross-attention to CLIP ViT-L/14 text; SR^t_l is Imagen's 64->256
Efficient U-Net with pseudo-3D layers; SR_h is Imagen's 256->1024 Efficient
U-Net (text cross-attention only) run on every frame at 768x768. The prior
network (text embedding -> image embedding) is not modelled. `steps` applies to
every diffusion stage (the paper does not state its samplers); guidance
doubles every batch.
"""

from __future__ import annotations

from dataclasses import replace

from emulator.errors import UserError
from workloads import imagen
from workloads.blocks import text_encoders
from workloads.blocks.text_encoders import CLIP_L
from workloads.blocks.unet import build_unet
from workloads.config import WorkloadConfig
from workloads.stable_diffusion import TEXT_TOKENS
from workloads.stable_diffusion import UNET as SD_UNET
from workloads.workload import Workload, graph_stage, guided

DECODER = replace(SD_UNET, in_channels=3, out_channels=3)
INTERPOLATOR = replace(DECODER, in_channels=7)
SR_SPATIOTEMPORAL = replace(imagen.SR_256, context_dim=CLIP_L.layer.dim)
SR_SPATIAL = replace(imagen.SR_1024, context_dim=CLIP_L.layer.dim)
BASE_SIDE, MID_SIDE, HIGH_SIDE = 64, 256, 768
INTERPOLATION = 5  # frames out per frame in, minus the end point


def interpolated(frames: int) -> int:
    return INTERPOLATION * (frames - 1) + 1


def stages(cfg: WorkloadConfig):
    f, fi = cfg.frames, interpolated(cfg.frames)
    return (
        graph_stage("text_encoder", CLIP_L.name, cfg, 1, guided(cfg),
                    lambda b, n: text_encoders.encode(b, CLIP_L, n, TEXT_TOKENS)),
        graph_stage("decoder", f"spatiotemporal UNet D^t, {f} frames at 64x64", cfg, cfg.steps, guided(cfg),
                    lambda b, n: build_unet(b, DECODER, n, BASE_SIDE, BASE_SIDE, TEXT_TOKENS, frames=f)),
        graph_stage("interpolation", f"frame interpolation ^F, {f} -> {fi} frames at 64x64", cfg, cfg.steps,
                    guided(cfg), lambda b, n: build_unet(b, INTERPOLATOR, n, BASE_SIDE, BASE_SIDE, TEXT_TOKENS,
                                                         frames=fi)),
        graph_stage("sr_256", f"spatiotemporal SR^t_l 64->256, {fi} frames", cfg, cfg.steps, guided(cfg),
                    lambda b, n: imagen.super_resolve(b, SR_SPATIOTEMPORAL, n, BASE_SIDE, MID_SIDE, TEXT_TOKENS,
                                                      frames=fi)),
        graph_stage("sr_768", f"spatial SR_h 256->768 per frame, {fi} frames", cfg, cfg.steps, guided(cfg) * fi,
                    lambda b, n: imagen.super_resolve(b, SR_SPATIAL, n, MID_SIDE, HIGH_SIDE, TEXT_TOKENS)),
    )


def check(cfg: WorkloadConfig) -> None:
    if cfg.frames < 2:
        raise UserError(f"--frames must be at least 2 for make-a-video (it interpolates between frames), got {cfg.frames}")


WORKLOAD = Workload(
    name="make-a-video",
    klass="text-to-video, spatiotemporal diffusion",
    description="Make-A-Video: pseudo-3D UNet, 16 frames at 64x64, frame interpolation, SR to 256 and 768",
    defaults=WorkloadConfig(frames=16, steps=50, guidance=True),
    stages=stages,
    check=check,
)
