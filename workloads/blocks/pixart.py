"""PixArt-Sigma DiT (diffusers PixArtTransformer2DModel): self-attention, cross-attention to T5, AdaLN-single.

Sources: PixArt-alpha/PixArt-Sigma-XL-2-1024-MS `transformer/config.json` on
Hugging Face, as diffusers' `scripts/convert_pixart_sigma_to_diffusers.py`
writes it (num_layers 28, num_attention_heads 16, attention_head_dim 72,
in_channels 4, out_channels 8, patch_size 2, cross_attention_dim 1152,
caption_channels 4096, attention_bias true, activation_fn gelu-approximate,
norm_type ada_norm_single, norm_elementwise_affine false, sample_size 128,
interpolation_scale 2, use_additional_conditions false for Sigma: no
resolution/aspect micro-conditions); structure from diffusers
`pixart_transformer_2d.py`, `attention.py` (BasicTransformerBlock,
ada_norm_single) and `normalization.py` (AdaLayerNormSingle).

AdaLN-single: one SiLU + linear of the timestep embedding gives 6 x D
modulation vectors for all blocks; each block adds its own learned table to
them (a [B, 6, D] add). Per block: LayerNorm, modulate, self-attention (biased
q/k/v/out), gated residual; cross-attention of the image tokens to the
projected T5 states (no norm before it), residual; LayerNorm, modulate, GELU
MLP (4x), gated residual. The output has 8 channels (noise and variance).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from workloads.blocks import dit_common as dit


@dataclass(frozen=True)
class PixArtSpec:
    heads: int = 16
    head_dim: int = 72
    layers: int = 28
    patch: int = 2
    in_channels: int = 4
    out_channels: int = 8  # learned sigma: noise and variance
    caption_dim: int = 4096  # T5-XXL hidden states
    mlp_ratio: int = 4

    @property
    def dim(self) -> int:
        return self.heads * self.head_dim


PIXART_SIGMA = PixArtSpec()


def cross_attention(b: GraphBuilder, x: Tensor, context: Tensor, heads: int) -> Tensor:
    """Image tokens x[B, L, D] attend to text states context[B, T, D] (padding-masked): [B, L, D]."""
    dim = x.shape[-1]
    q = b.linear("to_q", x, dim)
    k, v = b.linear("to_k", context, dim), b.linear("to_v", context, dim)
    return b.linear("to_out", b.attention("attention", q, k, v, heads, "cross"), dim)


def block(b: GraphBuilder, x: Tensor, context: Tensor, spec: PixArtSpec) -> Tensor:
    """x[B, L, D] -> [B, L, D]."""
    b.elementwise("scale_shift_table", "add", b.input(x.shape[0], 6, spec.dim))  # table + timestep vectors
    h = dit.ada_norm(b, x, "norm1")
    with b.scope("attn1"):
        x = dit.gated_residual(b, x, dit.self_attention(b, h, spec.heads), "residual")
    with b.scope("attn2"):
        x = b.add_("residual", x, cross_attention(b, x, context, spec.heads))
    h = dit.ada_norm(b, x, "norm2")
    with b.scope("ff"):
        h = dit.feed_forward(b, h, spec.mlp_ratio * spec.dim)
    return dit.gated_residual(b, x, h, "ff_residual")


def build_pixart(b: GraphBuilder, spec: PixArtSpec, batch: int, latent_h: int, latent_w: int, text_tokens: int) -> Tensor:
    """One denoising call: latent [B, 4, h, w], T5 states [B, T, 4096] -> [B, 8, h, w]."""
    with b.scope("pos_embed"):
        x = dit.patch_embed(b, b.input(batch, spec.in_channels, latent_h, latent_w), spec.patch, spec.dim)
    with b.scope("adaln_single"):
        with b.scope("emb"):
            temb = dit.timestep_embedding(b, batch, spec.dim)  # [B, D]
        dit.modulation(b, temb, spec.dim, 6)  # [B, 6D], shared by every block
    with b.scope("caption_projection"):
        context = dit.mlp_embedder(b, b.input(batch, text_tokens, spec.caption_dim), spec.dim, act="gelu")
    for i in range(spec.layers):
        with b.scope(f"transformer_blocks.{i}"):
            x = block(b, x, context, spec)
    b.elementwise("scale_shift_out", "add", b.input(batch, 2, spec.dim))  # final table + timestep embedding
    return dit.final_layer(b, x, spec.patch, spec.out_channels, latent_h, latent_w)
