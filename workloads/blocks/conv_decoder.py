"""Convolutional image decoders: the SD/SDXL VAE decoder and VQ-GAN decoders.

Structure of diffusers' `Decoder` (from taming-transformers): conv_in, a middle
block (ResNet, optional single-head self-attention over all positions, ResNet),
levels from the deepest up, each with `resnets` ResNet blocks and a 2x
up-sampling (nearest + 3x3 conv) except the last, then GroupNorm, SiLU, conv_out.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from workloads.blocks import transformer
from workloads.blocks.resnet import resnet, upsample
from workloads.blocks.transformer import TransformerSpec


@dataclass(frozen=True)
class ConvDecoderSpec:
    latent_channels: int
    channels: tuple[int, ...]  # per level, from full resolution down (SD: 128, 256, 512, 512)
    resnets: int  # ResNet blocks per level (SD: layers_per_block + 1 = 3)
    mid_attention: bool
    out_channels: int = 3
    post_quant_conv: bool = True  # the 1x1 conv AutoencoderKL applies before decoding
    norm_groups: int = 32

    @property
    def factor(self) -> int:
        return 2 ** (len(self.channels) - 1)


def decode(b: GraphBuilder, spec: ConvDecoderSpec, z: Tensor) -> Tensor:
    """z[B, latent, h, w] -> image [B, 3, h * factor, w * factor]."""
    g = spec.norm_groups
    if spec.post_quant_conv:
        z = b.conv2d("post_quant_conv", z, spec.latent_channels, kernel=1)
    x = b.conv2d("conv_in", z, spec.channels[-1])
    with b.scope("mid"):
        with b.scope("resnet.0"):
            x = resnet(b, x, spec.channels[-1], groups=g)
        if spec.mid_attention:
            with b.scope("attention"):
                x = _single_head_attention(b, x, g)
        with b.scope("resnet.1"):
            x = resnet(b, x, spec.channels[-1], groups=g)
    for i in reversed(range(len(spec.channels))):
        with b.scope(f"up.{i}"):
            for j in range(spec.resnets):
                with b.scope(f"resnet.{j}"):
                    x = resnet(b, x, spec.channels[i], groups=g)
            if i > 0:
                x = upsample(b, x)
    x = b.elementwise("act_out", "silu", b.group_norm("norm_out", x, g))
    return b.conv2d("conv_out", x, spec.out_channels)


def _single_head_attention(b: GraphBuilder, x: Tensor, groups: int) -> Tensor:
    """Self-attention of every position to every other, one head of width C."""
    n, c, h, w = x.shape
    t = b.rearrange("to_tokens", b.group_norm("norm", x, groups), n, h * w, c)
    o = transformer.attend(b, t, TransformerSpec(c, 1, 0, "gelu"), "self")
    return b.add_("residual", x, b.rearrange("to_image", o, n, c, h, w))
