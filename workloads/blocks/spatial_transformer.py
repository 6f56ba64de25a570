"""The attention layer of a UNet level, on feature maps x[N, C, H, W].

As diffusers' Transformer2DModel runs it for SD: GroupNorm, input projection
(1x1 conv, or a linear on tokens for SDXL), `depth` transformer blocks on the
[N, H*W, C] tokens (self-attention, cross-attention to the text, GEGLU MLP),
output projection, residual add. The same layer with no MLP stands for the
attention blocks of Imagen's UNets, and with no self-attention for the
cross-attention-only layers of its 256->1024 super-resolution UNet.

With `frames` (video, N = B*F), every layer that self-attends is followed by a
temporal attention layer: tokens rearranged to [B*H*W, F, C], LayerNorm,
self-attention over the F frames, residual add (Make-A-Video's pseudo-3D attention).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from workloads.blocks import transformer
from workloads.blocks.transformer import TransformerSpec


@dataclass(frozen=True)
class AttentionLayer:
    heads: int | None = None  # a fixed head count (SD v1.5: 8) ...
    head_dim: int | None = None  # ... or a fixed head width (SDXL, Imagen: 64)
    self_attention: bool = True
    cross_attention: bool = True
    depth: int = 1  # transformer blocks in the layer
    ff_mult: int = 4  # GEGLU hidden width / C; 0 for no MLP
    linear_projection: bool = False

    def __post_init__(self) -> None:
        if (self.heads is None) == (self.head_dim is None):
            raise ValueError("give exactly one of heads and head_dim")

    def spec(self, channels: int) -> TransformerSpec:
        heads = self.heads or channels // self.head_dim
        return TransformerSpec(channels, heads, self.ff_mult * channels, "geglu", "layer", bias=True, qkv_bias=False)


def attention_layer(b: GraphBuilder, x: Tensor, layer: AttentionLayer, context: Tensor, groups: int = 32,
                    frames: int = 0) -> Tensor:
    n, c, h, w = x.shape
    spec = layer.spec(c)
    t = b.group_norm("norm", x, groups)
    if layer.linear_projection:
        t = b.linear("proj_in", b.rearrange("to_tokens", t, n, h * w, c), c)
    else:
        t = b.rearrange("to_tokens", b.conv2d("proj_in", t, c, kernel=1), n, h * w, c)
    variant = "spatial" if frames else "self"
    for d in range(layer.depth):
        with b.scope(f"block.{d}"):
            t = transformer.layer(b, t, spec, variant, context=context if layer.cross_attention else None,
                                  self_attention=layer.self_attention)
    if layer.linear_projection:
        t = b.rearrange("to_image", b.linear("proj_out", t, c), n, c, h, w)
    else:
        t = b.conv2d("proj_out", b.rearrange("to_image", t, n, c, h, w), c, kernel=1)
    x = b.add_("residual", x, t)
    if frames and layer.self_attention:
        with b.scope("temporal"):
            x = temporal_attention(b, x, spec, frames)
    return x


def temporal_attention(b: GraphBuilder, x: Tensor, spec: TransformerSpec, frames: int) -> Tensor:
    """Self-attention over frames at every position: x[B*F, C, H, W] -> same."""
    bf, c, h, w = x.shape
    t = b.rearrange("to_time", x, bf // frames * h * w, frames, c)  # [B*H*W, F, C]
    with b.scope("attn"):
        o = transformer.attend(b, transformer.norm(b, t, spec.norm), spec, "temporal")
    t = b.add_("residual", t, o)
    return b.rearrange("to_space", t, bf, c, h, w)
