"""The diffusion UNet family: SD v1.5, SDXL, Imagen's base and Efficient U-Nets, Make-A-Video.

One spec describes them all (levels, ResNet blocks per level, which levels
attend and how), and `build_unet` writes the forward pass of one denoising step:

    sample[B, C_in, H, W] -> conv_in -> down levels (ResNet [+ attention] ... , downsample)
        -> middle (ResNet, attention, ResNet) -> up levels (concat skip, ResNet [+ attention] ..., upsample)
        -> GroupNorm, SiLU, conv_out -> [B, C_out, H, W]

Two layouts of a level:
- standard (SD, SDXL, Imagen base; diffusers' UNet2DConditionModel): blocks at
  the level's resolution, then a stride-2 conv; an attention layer after every
  ResNet block of an attending level; the up path has one more block per level.
- `downsample_first` (Imagen's Efficient U-Net, as in the imagen-pytorch
  reproduction with memory_efficient=True): every level first halves the
  resolution, then runs its blocks; one attention layer per level; an extra
  ResNet block at full resolution at both ends.

Video (`frames` > 0): activations are [B*F, C, H, W]; every 3x3 conv of a ResNet
block is followed by a temporal conv and every attention layer that
self-attends by a temporal attention layer over the frames (pseudo-3D).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from workloads.blocks.resnet import downsample, resnet, time_embedding, upsample
from workloads.blocks.spatial_transformer import AttentionLayer, attention_layer


@dataclass(frozen=True)
class UNetSpec:
    in_channels: int
    out_channels: int
    channels: tuple[int, ...]  # width per level
    blocks: tuple[int, ...]  # ResNet blocks per level on the down path
    attention: tuple[AttentionLayer | None, ...]  # the attention layer of each level, None if it does not attend
    mid_attention: AttentionLayer | None
    context_dim: int  # width of the text embedding cross-attention reads
    norm_groups: int = 32
    downsample_first: bool = False
    add_embed_dim: int = 0  # SDXL: pooled text + size/crop features added to the time embedding

    def __post_init__(self) -> None:
        n = len(self.channels)
        if not (len(self.blocks) == len(self.attention) == n):
            raise ValueError("channels, blocks and attention need one entry per level")

    @property
    def levels(self) -> int:
        return len(self.channels)

    @property
    def time_dim(self) -> int:
        return 4 * self.channels[0]

    def downsampling(self) -> int:
        """Total spatial reduction from the input to the middle block."""
        return 2 ** (self.levels if self.downsample_first else self.levels - 1)


def build_unet(b: GraphBuilder, spec: UNetSpec, batch: int, height: int, width: int, text_tokens: int,
               frames: int = 0, sample: Tensor | None = None) -> Tensor:
    """One denoising step at batch `batch` (videos: `frames` frames each).

    `sample` is the [B*F, C_in, H, W] input if an earlier op of the same graph
    produces it (super-resolution concatenates the up-sampled low-res image).
    """
    if height % spec.downsampling() or width % spec.downsampling():
        raise ValueError(f"UNet input {height}x{width} is not divisible by {spec.downsampling()}")
    n = batch * max(frames, 1)  # images the 2-d ops see
    context = b.input(n, text_tokens, spec.context_dim)  # [B*F, T, Dc]
    temb = time_embedding(b, n, spec.channels[0], spec.time_dim)
    if spec.add_embed_dim:
        with b.scope("add_embedding"):
            extra = b.linear("linear_1", b.input(n, spec.add_embed_dim), spec.time_dim)
            extra = b.linear("linear_2", b.elementwise("act", "silu", extra), spec.time_dim)
            temb = b.add_("add", temb, extra)

    def res(name: str, x: Tensor, c_out: int) -> Tensor:
        with b.scope(name):
            return resnet(b, x, c_out, temb, spec.norm_groups, frames)

    def attend(name: str, x: Tensor, layer: AttentionLayer | None) -> Tensor:
        if layer is None:
            return x
        with b.scope(name):
            return attention_layer(b, x, layer, context, spec.norm_groups, frames)

    if sample is None:
        sample = b.input(n, spec.in_channels, height, width)
    x = b.conv2d("conv_in", sample, spec.channels[0])
    if spec.downsample_first:
        x = res("init_block", x, spec.channels[0])
        skips = []
    else:
        skips = [x]

    for i, (c, blocks, layer) in enumerate(zip(spec.channels, spec.blocks, spec.attention)):
        with b.scope(f"down.{i}"):
            if spec.downsample_first:
                x = downsample(b, x, c)
            for j in range(blocks):
                x = res(f"resnet.{j}", x, c)
                if not spec.downsample_first:
                    x = attend(f"attention.{j}", x, layer)
                skips.append(x)
            if spec.downsample_first:
                x = attend("attention", x, layer)
            elif i < spec.levels - 1:
                x = downsample(b, x)
                skips.append(x)

    with b.scope("mid"):
        x = res("resnet.0", x, spec.channels[-1])
        x = attend("attention", x, spec.mid_attention)
        x = res("resnet.1", x, spec.channels[-1])

    for i in reversed(range(spec.levels)):
        c, layer = spec.channels[i], spec.attention[i]
        blocks = spec.blocks[i] if spec.downsample_first else spec.blocks[i] + 1
        with b.scope(f"up.{i}"):
            for j in range(blocks):
                x = b.concat(f"concat.{j}", x, skips.pop())
                x = res(f"resnet.{j}", x, c)
                if not spec.downsample_first:
                    x = attend(f"attention.{j}", x, layer)
            if spec.downsample_first:
                x = attend("attention", x, layer)
                x = upsample(b, x, spec.channels[i - 1] if i > 0 else spec.channels[0])
            elif i > 0:
                x = upsample(b, x)
    assert not skips, "every skip connection is consumed"

    if spec.downsample_first:
        x = res("final_block", x, spec.channels[0])
    x = b.elementwise("act_out", "silu", b.group_norm("norm_out", x, spec.norm_groups))
    return b.conv2d("conv_out", x, spec.out_channels)


def unet_similarity_levels(spec: UNetSpec, height: int, width: int) -> list[tuple[int, int, int]]:
    """(positions, self-attention head-calls, cross-attention head-calls) per attending level,
    counted from the spec alone, for `emulator.similarity.level_bytes`."""
    levels = []

    def add(level_h: int, level_w: int, channels: int, layer: AttentionLayer, visits: int) -> None:
        heads = layer.spec(channels).heads * layer.depth * visits
        levels.append((level_h * level_w, heads if layer.self_attention else 0, heads if layer.cross_attention else 0))

    for i, (c, layer) in enumerate(zip(spec.channels, spec.attention)):
        if layer is not None:
            visits = 2 if spec.downsample_first else 2 * spec.blocks[i] + 1
            scale = 2 ** (i + 1 if spec.downsample_first else i)
            add(height // scale, width // scale, c, layer, visits)
    if spec.mid_attention is not None:
        scale = spec.downsampling()
        add(height // scale, width // scale, spec.channels[-1], spec.mid_attention, 1)
    return levels
