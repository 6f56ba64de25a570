"""3-D (video) VAE decoders: latent video [B, C, f, h, w] -> frames [B, 3, F, H, W].

One structure covers the four: conv_in, a middle block (ResNets, optional single-head attention), levels
from the deepest up, each with ResNet blocks and an up-sampler (2x in space, optionally 2x in time), then
norm, SiLU, conv_out. ResNets are norm, SiLU, 3x3x3 conv, norm, SiLU, 3x3x3 conv (1x1x1 shortcut when the
width changes). A temporal 2x of a causal VAE keeps the first frame single: f -> 2f - 1, so 4x in time maps
f latent frames to 4(f - 1) + 1. Configs are the diffusers classes' defaults, which the published
checkpoints use:
- Wan 2.1 (`AutoencoderKLWan`, base_dim 96, dim_mult (1, 2, 4, 4), 2 + 1 ResNets per level, temporal
  up-sampling in the first two levels): RMS norms over channels, per-frame attention in the middle, each
  up-sampler's conv halves the width (384 -> 192).
- HunyuanVideo (`AutoencoderKLHunyuanVideo`, block_out_channels (128, 256, 512, 512), 3 ResNets per level,
  temporal up-sampling in levels 1 and 2): GroupNorm, middle attention over every latent position of the
  video (frame-causal mask, costed as full attention).
- CogVideoX (`AutoencoderKLCogVideoX`, block_out_channels (128, 256, 256, 512), 4 ResNets per level,
  temporal up-sampling in the first two levels): its SpatialNorm3D (GroupNorm plus two 1x1x1 convs from the
  latent) is costed as GroupNorm; no middle attention.
- LTX-Video 0.9.0 (`AutoencoderKLLTXVideo` as scripts/convert_ltx_to_diffusers.py configures it: latent 128,
  decoder widths (512, 512, 256, 128), 4 middle and (3, 3, 3, 4) level ResNets, three 2x2x2 up-samplers that
  run before their level's ResNets as a conv to 8x the channels then depth-to-space, RMS norms, conv_out to
  3 x 4 x 4 channels and a 4x4 pixel unshuffle): 32x in space, 8x in time.
Not modelled: tiled decoding (diffusers decodes whole videos unless `enable_tiling()` is called; Wan and
CogVideoX decode latent frames in small causal chunks with a cache, which changes memory but not the work),
causal-conv caches, and the noise and timestep injection of later LTX decoders.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from emulator.shapes import Attention, Conv, Norm


@dataclass(frozen=True)
class Level:
    channels: int  # width of its ResNets
    resnets: int
    time_up: bool = False  # its up-sampler also doubles frames
    space_up: bool = True  # it ends (or, with up_first, starts) with a 2x spatial up-sampler


@dataclass(frozen=True)
class VideoDecoderSpec:
    name: str
    latent_channels: int
    mid_channels: int
    mid_resnets: int
    mid_attention: str  # none | frame (per frame over h*w) | video (over f*h*w)
    levels: tuple[Level, ...]  # deepest first
    norm: str = "group"  # group | rms
    halve_up: bool = False  # Wan: an up-sampler's conv halves the width
    up_first: bool = False  # LTX: a level up-samples before its ResNets (conv to 8x channels, depth-to-space)
    out_patch: int = 1  # LTX: conv_out makes 3 * p * p channels, then a p x p pixel shuffle

    @property
    def space_factor(self) -> int:
        return 2 ** sum(lv.space_up for lv in self.levels) * self.out_patch

    @property
    def time_factor(self) -> int:
        return 2 ** sum(lv.time_up for lv in self.levels)

    def frames(self, latent_frames: int) -> int:
        return self.time_factor * (latent_frames - 1) + 1


def conv3d(b: GraphBuilder, name: str, x: Tensor, c_out: int, kernel: tuple[int, int, int] = (3, 3, 3)) -> Tensor:
    """Stride-1 conv of x[B, C, F, H, W] keeping its size (causal or 'same' padding do the same work)."""
    n, c, f, h, w = x.shape
    return b.add(name, Conv(n, c, c_out, (f, h, w), kernel), (x,), (n, c_out, f, h, w))


def norm_act(b: GraphBuilder, spec: VideoDecoderSpec, name: str, x: Tensor) -> Tensor:
    """Channel norm (GroupNorm of 32 or an RMS norm over channels) then SiLU, on x[B, C, F, H, W]."""
    n, c = x.shape[:2]
    shape = Norm("group", x.numel, c, 32, n) if spec.norm == "group" else Norm("rms", x.numel, c)
    return b.elementwise(f"{name}_act", "silu", b.add(name, shape, (x,), x.shape))


def resnet3d(b: GraphBuilder, spec: VideoDecoderSpec, x: Tensor, c_out: int) -> Tensor:
    h = conv3d(b, "conv1", norm_act(b, spec, "norm1", x), c_out)
    h = conv3d(b, "conv2", norm_act(b, spec, "norm2", h), c_out)
    if x.shape[1] != c_out:
        x = conv3d(b, "conv_shortcut", x, c_out, (1, 1, 1))
    return b.add_("residual", x, h)


def attention(b: GraphBuilder, spec: VideoDecoderSpec, x: Tensor) -> Tensor:
    """Single-head self-attention of width C, per frame or over the whole latent video."""
    n, c, f, h, w = x.shape
    batch, length = (n * f, h * w) if spec.mid_attention == "frame" else (n, f * h * w)
    t = b.rearrange("to_tokens", norm_act(b, spec, "norm", x), batch, length, c)
    q, k, v = (b.linear(s, t, c) for s in "qkv")
    o = b.add("attention", Attention(batch, 1, length, length, c), (q, k, v), (batch, length, c))
    o = b.rearrange("to_video", b.linear("proj", o, c), *x.shape)
    return b.add_("residual", x, o)


def upsample(b: GraphBuilder, spec: VideoDecoderSpec, x: Tensor, level: Level, c_out: int) -> Tensor:
    """2x in space (and in time if the level says so): nearest-neighbour then conv, or conv then depth-to-space."""
    n, c, f, h, w = x.shape
    f2 = 2 * f - 1 if level.time_up else f
    if spec.up_first:  # conv to 8x (or 4x) channels, then depth-to-space
        r = (2 if level.time_up else 1) * 4
        y = conv3d(b, "conv", x, c_out * r)
        return b.rearrange("depth_to_space", y.view(n, c_out, f * r // 4, 2 * h, 2 * w).narrow(2, f2),
                           n, c_out, f2, 2 * h, 2 * w)
    if level.time_up:
        x = b.rearrange("time_up", conv3d(b, "time_conv", x, 2 * c, (3, 1, 1)), n, 2 * c, f, h, w).view(n, c, 2 * f, h, w)
        x = x.narrow(2, f2)
    up = b.upsample("upsample", x.view(n * c, f2, h, w)).view(n, c, f2, 2 * h, 2 * w)
    return conv3d(b, "conv", up, c_out)


def decode(b: GraphBuilder, spec: VideoDecoderSpec, z: Tensor) -> Tensor:
    """z[B, latent, f, h, w] -> video [B, 3, frames(f), h * space_factor, w * space_factor]."""
    x = conv3d(b, "conv_in", z, spec.mid_channels)
    with b.scope("mid"):
        for i in range(spec.mid_resnets):
            with b.scope(f"resnet.{i}"):
                x = resnet3d(b, spec, x, spec.mid_channels)
            if i == 0 and spec.mid_attention != "none":
                with b.scope("attention"):
                    x = attention(b, spec, x)
    for i, level in enumerate(spec.levels):
        with b.scope(f"up.{i}"):
            x = _level(b, spec, x, level)
    x = conv3d(b, "conv_out", norm_act(b, spec, "norm_out", x), 3 * spec.out_patch ** 2)
    if spec.out_patch > 1:
        n, _, f, h, w = x.shape
        x = b.rearrange("unpatchify", x, n, 3, f, h * spec.out_patch, w * spec.out_patch)
    return x


def _level(b: GraphBuilder, spec: VideoDecoderSpec, x: Tensor, level: Level) -> Tensor:
    if spec.up_first and level.space_up:
        with b.scope("upsampler"):
            x = upsample(b, spec, x, level, x.shape[1])
    for j in range(level.resnets):
        with b.scope(f"resnet.{j}"):
            x = resnet3d(b, spec, x, level.channels)
    if not spec.up_first and level.space_up:
        c_out = level.channels // 2 if spec.halve_up else level.channels
        with b.scope("upsampler"):
            x = upsample(b, spec, x, level, c_out)
    return x


WAN = VideoDecoderSpec("Wan 2.1 VAE decoder", 16, 384, 2, "frame",
                       (Level(384, 3, True), Level(384, 3, True), Level(384, 3), Level(96, 3, space_up=False)),
                       norm="rms", halve_up=True)
HUNYUAN = VideoDecoderSpec("HunyuanVideo VAE decoder", 16, 512, 2, "video",
                           (Level(512, 3), Level(512, 3, True), Level(256, 3, True), Level(128, 3, space_up=False)))
COGVIDEOX = VideoDecoderSpec("CogVideoX VAE decoder", 16, 512, 2, "none",
                             (Level(512, 4, True), Level(256, 4, True), Level(256, 4),
                              Level(128, 4, space_up=False)))
LTX = VideoDecoderSpec("LTX-Video 0.9.0 VAE decoder", 128, 512, 4, "none",
                       (Level(512, 3, space_up=False), Level(512, 3, True), Level(256, 3, True), Level(128, 4, True)),
                       norm="rms", up_first=True, out_patch=4)
