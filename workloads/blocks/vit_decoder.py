"""ViT-VQGAN decoder (Parti): code ids on a grid -> transformer -> pixel patches.

codes[B, G*G] -> codebook lookup [B, G*G, code_dim] -> linear to width D,
learned positions -> `layers` bidirectional layers -> LayerNorm -> linear to
patch*patch*3 pixels per token -> rearranged into the [B, 3, G*patch, G*patch] image.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from workloads.blocks import transformer
from workloads.blocks.transformer import TransformerSpec


@dataclass(frozen=True)
class ViTDecoderSpec:
    layer: TransformerSpec
    layers: int
    grid: int  # tokens per side
    patch: int  # pixels per token side
    code_dim: int
    codebook: int


def vit_decode(b: GraphBuilder, spec: ViTDecoderSpec, batch: int) -> Tensor:
    tokens = spec.grid * spec.grid
    codes = b.embedding("codebook", b.input(batch, tokens), spec.codebook, spec.code_dim)
    x = b.linear("code_projection", codes, spec.layer.dim)
    pos = b.embedding("position_embedding", b.input(1, tokens), tokens, spec.layer.dim)
    x = b.elementwise("add_positions", "add", x, pos)
    x = transformer.stack(b, x, spec.layer, spec.layers)
    x = transformer.norm(b, x, spec.layer.norm)
    pixels = b.linear("to_pixels", x, spec.patch * spec.patch * 3)  # [B, G*G, p*p*3]
    side = spec.grid * spec.patch
    return b.rearrange("to_image", pixels, batch, 3, side, side)
