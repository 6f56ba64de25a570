"""SD3 / SD3.5 MMDiT (diffusers SD3Transformer2DModel), including SD3.5-medium's MMDiT-X dual-attention blocks.

Sources: stabilityai/stable-diffusion-3.5-large `transformer/config.json`
(num_layers 38, num_attention_heads 38, attention_head_dim 64,
caption_projection_dim 2432, joint_attention_dim 4096, pooled_projection_dim
2048, patch_size 2, in/out_channels 16, pos_embed_max_size 192, qk_norm
rms_norm) and stabilityai/stable-diffusion-3.5-medium `transformer/config.json`
(num_layers 24, 24 heads of 64, caption_projection_dim 1536, pos_embed_max_size
384, qk_norm rms_norm, dual_attention_layers 0..12), as copied in public
repositories (e.g. Comfy-Org/stable-diffusion-3.5-fp8 loaders, tenstorrent
tt-metal's SD3.5 port); structure from diffusers `transformer_sd3.py`,
`attention.py` (JointTransformerBlock) and `normalization.py`
(SD35AdaLayerNormZeroX); the MMDiT-X design from the SD3.5 release notes.

Per block: image and text streams each get AdaLayerNormZero (6 modulation
vectors; 9 for an MMDiT-X block, whose second attention gets its own shift,
scale and gate); joint attention over [image; text] with RMS QK-norm (no
RoPE: positions are a fixed 2-D sin-cos table added at the patch embedding);
gated residual; MMDiT-X adds self-attention over the image tokens alone;
LayerNorm, modulated GELU MLP (4x), gated residual, per stream. The last block
is context-pre-only: its text stream is only read (AdaLayerNormContinuous, no
text output projection or MLP).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from workloads.blocks import dit_common as dit


@dataclass(frozen=True)
class MMDiTSpec:
    heads: int
    layers: int
    dual_attention_layers: tuple[int, ...] = ()  # MMDiT-X blocks (SD3.5-medium: 0..12)
    head_dim: int = 64
    patch: int = 2
    in_channels: int = 16
    out_channels: int = 16
    context_dim: int = 4096  # CLIP-L + bigG states zero-padded to 4096, concatenated with T5's
    pooled_dim: int = 2048  # CLIP-L pooled (768) + bigG pooled (1280)
    pos_embed_max_size: int = 192  # patches per side of the position table: the largest latent is this x patch
    mlp_ratio: int = 4

    @property
    def dim(self) -> int:
        return self.heads * self.head_dim


SD35_LARGE = MMDiTSpec(heads=38, layers=38, pos_embed_max_size=192)
SD35_MEDIUM = MMDiTSpec(heads=24, layers=24, dual_attention_layers=tuple(range(13)), pos_embed_max_size=384)


def conditioning(b: GraphBuilder, spec: MMDiTSpec, batch: int) -> Tensor:
    """temb[B, D]: timestep MLP + pooled-text MLP (CombinedTimestepTextProjEmbeddings)."""
    with b.scope("time_text_embed"):
        temb = dit.timestep_embedding(b, batch, spec.dim)
        with b.scope("text_embedder"):
            pooled = dit.mlp_embedder(b, b.input(batch, spec.pooled_dim), spec.dim)
        return b.add_("add_text", temb, pooled)


def joint_block(b: GraphBuilder, x: Tensor, c: Tensor, temb: Tensor, spec: MMDiTSpec, dual: bool,
                last: bool) -> tuple[Tensor, Tensor]:
    """x[B, L, D] image, c[B, T, D] text -> both updated (c unchanged by the last block)."""
    with b.scope("norm1"):
        dit.modulation(b, temb, spec.dim, 9 if dual else 6)
        hx = dit.ada_norm(b, x)
        hx2 = dit.modulate(b, hx, "modulate2") if dual else None  # the second attention's own shift and scale
    with b.scope("norm1_context"):
        dit.modulation(b, temb, spec.dim, 2 if last else 6)
        hc = dit.ada_norm(b, c)
    with b.scope("attn"):
        ox, oc = dit.joint_attention(b, hx, hc, spec.heads, qk_norm=True, context_out=not last)
    x = dit.gated_residual(b, x, ox, "attn_residual")
    if dual:
        with b.scope("attn2"):
            x = dit.gated_residual(b, x, dit.self_attention(b, hx2, spec.heads, qk_norm=True), "residual")
    x = dit.gated_feed_forward(b, x, spec.mlp_ratio * spec.dim, "norm2", "ff")
    if not last:
        c = dit.gated_feed_forward(b, dit.gated_residual(b, c, oc, "context_attn_residual"), spec.mlp_ratio * spec.dim,
                                   "norm2_context", "ff_context")
    return x, c


def build_mmdit(b: GraphBuilder, spec: MMDiTSpec, batch: int, latent_h: int, latent_w: int, text_tokens: int) -> Tensor:
    """One denoising call: latent [B, 16, h, w], text states [B, T, 4096], pooled [B, 2048] -> [B, 16, h, w]."""
    with b.scope("pos_embed"):
        x = dit.patch_embed(b, b.input(batch, spec.in_channels, latent_h, latent_w), spec.patch, spec.dim)
    temb = conditioning(b, spec, batch)
    c = b.linear("context_embedder", b.input(batch, text_tokens, spec.context_dim), spec.dim)  # [B, T, D]
    for i in range(spec.layers):
        with b.scope(f"transformer_blocks.{i}"):
            x, c = joint_block(b, x, c, temb, spec, i in spec.dual_attention_layers, i == spec.layers - 1)
    return dit.final_layer(b, x, spec.patch, spec.out_channels, latent_h, latent_w, temb=temb)
