"""FLUX.1 transformer (diffusers FluxTransformer2DModel): double-stream MMDiT blocks, then single-stream blocks.

Sources: black-forest-labs/FLUX.1-dev and FLUX.1-schnell `transformer/config.json`
on Hugging Face (patch_size 1, in_channels 64, num_layers 19, num_single_layers
38, attention_head_dim 128, num_attention_heads 24, joint_attention_dim 4096,
pooled_projection_dim 768, axes_dims_rope [16, 56, 56]; guidance_embeds true for
dev, false for schnell), the same numbers in black-forest-labs/flux
`src/flux/util.py` (depth 19, depth_single_blocks 38, hidden_size 3072,
mlp_ratio 4, qkv_bias) and diffusers `transformer_flux.py` for the structure.

The pipeline packs the 16-channel latent into 2x2 patches before the model
(64 channels per token, `_pack_latents`), so the model's patch embedding is a
linear (x_embedder); it unpacks after the last step. Per block:
- double-stream (image and text each with AdaLayerNormZero, 6 modulation
  vectors): joint attention over [text; image] with RMS QK-norm and RoPE on
  all T + L tokens, per-stream output projection, gated residual, LayerNorm,
  modulated GELU MLP (4x), gated residual;
- single-stream (on [text; image], AdaLayerNormZeroSingle, 3 vectors): one
  attention (no output projection) and an MLP side by side from the same
  normed input, concatenated [B, S, 5D] and projected back to D (proj_out),
  gated residual. In fp16 diffusers clips each block's output (one pass).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from workloads.blocks import dit_common as dit


@dataclass(frozen=True)
class FluxSpec:
    heads: int = 24
    head_dim: int = 128
    double_layers: int = 19
    single_layers: int = 38
    in_channels: int = 64  # 16 latent channels x 2x2 packed patch
    context_dim: int = 4096  # T5-XXL hidden states
    pooled_dim: int = 768  # CLIP-L pooled output
    guidance_embeds: bool = True  # dev: guidance distilled into an embedding; schnell: none
    mlp_ratio: int = 4

    @property
    def dim(self) -> int:
        return self.heads * self.head_dim


FLUX_DEV = FluxSpec()
FLUX_SCHNELL = FluxSpec(guidance_embeds=False)
LATENT_CHANNELS = 16
PATCH = 2


def conditioning(b: GraphBuilder, spec: FluxSpec, batch: int) -> Tensor:
    """temb[B, D]: timestep MLP (+ guidance MLP) + pooled-CLIP MLP."""
    with b.scope("time_text_embed"):
        temb = dit.timestep_embedding(b, batch, spec.dim)
        if spec.guidance_embeds:
            g = dit.timestep_features(b, batch, name="guidance_proj")
            with b.scope("guidance_embedder"):
                temb = b.add_("add_guidance", temb, dit.mlp_embedder(b, g, spec.dim))
        with b.scope("text_embedder"):
            pooled = dit.mlp_embedder(b, b.input(batch, spec.pooled_dim), spec.dim)
        return b.add_("add_text", temb, pooled)


def double_block(b: GraphBuilder, x: Tensor, c: Tensor, temb: Tensor, spec: FluxSpec, clip: bool) -> tuple[Tensor, Tensor]:
    """x[B, L, D] image and c[B, T, D] text -> both updated."""
    with b.scope("norm1"):
        dit.modulation(b, temb, spec.dim, 6)
        hx = dit.ada_norm(b, x)
    with b.scope("norm1_context"):
        dit.modulation(b, temb, spec.dim, 6)
        hc = dit.ada_norm(b, c)
    with b.scope("attn"):
        ox, oc = dit.joint_attention(b, hx, hc, spec.heads, qk_norm=True, rope_qk=True, context_first=True)
    hidden = spec.mlp_ratio * spec.dim
    x = dit.gated_feed_forward(b, dit.gated_residual(b, x, ox, "attn_residual"), hidden, "norm2", "ff")
    c = dit.gated_feed_forward(b, dit.gated_residual(b, c, oc, "context_attn_residual"), hidden,
                               "norm2_context", "ff_context")
    if clip:
        c = b.elementwise("clip", "unary", c)
    return x, c


def single_block(b: GraphBuilder, s: Tensor, temb: Tensor, spec: FluxSpec, clip: bool) -> Tensor:
    """s[B, T+L, D] -> [B, T+L, D]: parallel attention and MLP from one modulated norm."""
    with b.scope("norm"):
        dit.modulation(b, temb, spec.dim, 3)
        h = dit.ada_norm(b, s)
    mlp = b.elementwise("act_mlp", "gelu", b.linear("proj_mlp", h, spec.mlp_ratio * spec.dim))  # [B, S, 4D]
    with b.scope("attn"):
        a = dit.self_attention(b, h, spec.heads, qk_norm=True, rope_qk=True, out=False)  # [B, S, D]
    y = b.linear("proj_out", b.concat("concat", a, mlp, dim=2), spec.dim)
    s = dit.gated_residual(b, s, y)
    return b.elementwise("clip", "unary", s) if clip else s


def build_flux(b: GraphBuilder, spec: FluxSpec, batch: int, latent_h: int, latent_w: int, text_tokens: int) -> Tensor:
    """One denoising call on packed latents [B, (h/2)(w/2), 64] and T5 states [B, T, 4096] -> [B, L, 64]."""
    tokens = (latent_h // PATCH) * (latent_w // PATCH)
    fp16 = b.dtype == "fp16"
    x = b.linear("x_embedder", b.input(batch, tokens, spec.in_channels), spec.dim)  # [B, L, D]
    c = b.linear("context_embedder", b.input(batch, text_tokens, spec.context_dim), spec.dim)  # [B, T, D]
    temb = conditioning(b, spec, batch)
    # RoPE table: cos and sin per position and rotary channel, [T + L, head_dim] each (FluxPosEmbed)
    b.elementwise("pos_embed", "unary", b.input(2, text_tokens + tokens, spec.head_dim))
    for i in range(spec.double_layers):
        with b.scope(f"transformer_blocks.{i}"):
            x, c = double_block(b, x, c, temb, spec, fp16)
    for i in range(spec.single_layers):
        with b.scope(f"single_transformer_blocks.{i}"):
            s = b.concat("concat_streams", c, x, dim=1)  # [B, T+L, D]
            s = single_block(b, s, temb, spec, fp16)
            c, x = Tensor(c.shape, s.node), Tensor(x.shape, s.node)  # split back: views
    with b.scope("norm_out"):
        dit.modulation(b, temb, spec.dim, 2)
    return b.linear("proj_out", dit.ada_norm(b, x, "norm_out"), PATCH * PATCH * LATENT_CHANNELS)
