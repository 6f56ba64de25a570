"""Convolutional blocks shared by UNets and conv decoders: ResNet block, resampling, time embedding.

Follows diffusers' ResnetBlock2D as SD and SDXL run it: GroupNorm, SiLU, 3x3 conv,
add the projected time embedding, GroupNorm, SiLU, 3x3 conv, 1x1 conv shortcut
when the width changes, residual add. With `frames`, each 3x3 conv is followed
by a temporal 1-d conv over the frames (Make-A-Video's pseudo-3D conv).
"""

from __future__ import annotations

from emulator.builder import GraphBuilder, Tensor


def resnet(b: GraphBuilder, x: Tensor, c_out: int, temb: Tensor | None = None, groups: int = 32,
           frames: int = 0) -> Tensor:
    """x[B, C, H, W] -> [B, c_out, H, W]; temb[B, E] is projected to c_out and added."""
    h = b.elementwise("act1", "silu", b.group_norm("norm1", x, groups))
    h = b.conv2d("conv1", h, c_out)
    if frames:
        h = b.temporal_conv("temporal_conv1", h, frames)
    if temb is not None:
        t = b.linear("time_emb_proj", b.elementwise("time_act", "silu", temb), c_out)
        h = b.elementwise("add_time", "add", h, t)
    h = b.elementwise("act2", "silu", b.group_norm("norm2", h, groups))
    h = b.conv2d("conv2", h, c_out)
    if frames:
        h = b.temporal_conv("temporal_conv2", h, frames)
    if x.shape[1] != c_out:
        x = b.conv2d("conv_shortcut", x, c_out, kernel=1)
    return b.add_("residual", x, h)


def downsample(b: GraphBuilder, x: Tensor, c_out: int | None = None) -> Tensor:
    """Stride-2 3x3 conv: [B, C, H, W] -> [B, c_out, H/2, W/2]."""
    return b.conv2d("downsample", x, c_out or x.shape[1], stride=2)


def upsample(b: GraphBuilder, x: Tensor, c_out: int | None = None) -> Tensor:
    """Nearest 2x then 3x3 conv: [B, C, H, W] -> [B, c_out, 2H, 2W]."""
    return b.conv2d("upsample_conv", b.upsample("upsample", x), c_out or x.shape[1])


def time_embedding(b: GraphBuilder, batch: int, base: int, dim: int) -> Tensor:
    """Sinusoidal timestep features [B, base] -> MLP -> [B, dim]."""
    t = b.elementwise("time_proj", "timestep", b.input(batch, base))
    t = b.linear("time_linear_1", t, dim)
    return b.linear("time_linear_2", b.elementwise("time_act", "silu", t), dim)
