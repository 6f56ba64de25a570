"""Pieces every diffusion transformer shares, as diffusers runs them on token sequences x[B, L, D].

- Timestep and pooled-text embeddings: sinusoidal features of the timestep
  (`Timesteps`, 256 channels) through a two-layer MLP (`TimestepEmbedding`:
  linear, SiLU, linear); a pooled text vector through the same shape of MLP
  (`PixArtAlphaTextProjection`, SiLU or tanh-GELU).
- AdaLN modulation: SiLU of the conditioning vector [B, E], one linear to
  `chunks` x D (shift, scale, gate per sub-layer), then
  `norm(x) * (1 + scale) + shift` and the gated residual `x + gate * h`
  (`AdaLayerNormZero`, `AdaLayerNormZeroSingle`, `AdaLayerNormContinuous`).
- RoPE: q and k rotated by position, `x * cos + rotate(x) * sin`, elementwise work.
- QK-norm: RMSNorm over each head's `head_dim` channels of q and k.
- Patch embedding (a p x p conv of stride p, `PatchEmbed`) and the final layer
  (modulated LayerNorm, linear to p*p*C_out, unpatchify copy).

Sources: diffusers `models/embeddings.py`, `models/normalization.py`,
`models/attention_processor.py` (the classes named above), which the image
and video DiTs of the suite (FLUX.1, SD3.5, PixArt-Sigma, Wan, ...) all use.
"""

from __future__ import annotations

from emulator.builder import GraphBuilder, Tensor
from emulator.shapes import Norm

TIMESTEP_CHANNELS = 256  # sinusoidal features of the timestep (diffusers `Timesteps(256, ...)`)


def timestep_features(b: GraphBuilder, batch: int, channels: int = TIMESTEP_CHANNELS, name: str = "time_proj") -> Tensor:
    """Sinusoidal features of one scalar per sample: [B] -> [B, channels]."""
    return b.elementwise(name, "timestep", b.input(batch, channels))


def mlp_embedder(b: GraphBuilder, x: Tensor, dim: int, act: str = "silu", hidden: int | None = None) -> Tensor:
    """linear_1, activation, linear_2: x[B, E] -> [B, dim] (TimestepEmbedding, PixArtAlphaTextProjection)."""
    h = b.linear("linear_1", x, hidden or dim)
    return b.linear("linear_2", b.elementwise("act", act, h), dim)


def timestep_embedding(b: GraphBuilder, batch: int, dim: int) -> Tensor:
    """Timestep -> sinusoidal features -> MLP: [B, dim]."""
    t = timestep_features(b, batch)
    with b.scope("timestep_embedder"):
        return mlp_embedder(b, t, dim)


def modulation(b: GraphBuilder, cond: Tensor, dim: int, chunks: int, name: str = "linear") -> Tensor:
    """SiLU, then one linear to `chunks` modulation vectors: cond[B, E] -> [B, chunks * dim]."""
    return b.linear(name, b.elementwise("silu", "silu", cond), chunks * dim)


def modulate(b: GraphBuilder, x: Tensor, name: str = "modulate") -> Tensor:
    """x[B, L, D] * (1 + scale[B, 1, D]) + shift[B, 1, D]: a multiply and an add over x."""
    return b.elementwise(f"{name}.shift", "add", b.elementwise(f"{name}.scale", "mul", x))


def ada_norm(b: GraphBuilder, x: Tensor, name: str = "norm") -> Tensor:
    """LayerNorm (no affine) of x[B, L, D], then shift and scale from a modulation vector."""
    return modulate(b, b.layer_norm(name, x), f"{name}_modulate")


def gated_residual(b: GraphBuilder, x: Tensor, h: Tensor, name: str = "residual") -> Tensor:
    """x + gate[B, 1, D] * h: the gate multiplies h, then the residual add."""
    return b.add_(name, x, b.elementwise(f"{name}_gate", "mul", h))


def rope(b: GraphBuilder, x: Tensor, name: str) -> Tensor:
    """Rotary position embedding of q or k [B, L, H*d]: x * cos + rotate(x) * sin, elementwise."""
    return b.elementwise(name, "rope", x)


def head_rms_norm(b: GraphBuilder, x: Tensor, head_dim: int, name: str) -> Tensor:
    """RMSNorm over each head's channels of x[B, L, H*d] (QK-norm), with a learned scale of head_dim."""
    return b.add(name, Norm("rms", x.numel, head_dim), (x,), x.shape)


def feed_forward(b: GraphBuilder, x: Tensor, hidden: int, act: str = "gelu", bias: bool = True) -> Tensor:
    """diffusers FeedForward (GELU, tanh approximation): x[B, L, D] -> [B, L, hidden] -> [B, L, D]."""
    h = b.elementwise(act, act, b.linear("proj_in", x, hidden, bias=bias))
    return b.linear("proj_out", h, x.shape[-1], bias=bias)


def patch_embed(b: GraphBuilder, latent: Tensor, patch: int, dim: int, positions: bool = True) -> Tensor:
    """p x p conv of stride p over latent[B, C, h, w] -> tokens [B, (h/p)(w/p), dim], plus fixed positions."""
    n, _, h, w = latent.shape
    x = b.conv2d("proj", latent, dim, kernel=patch, stride=patch)  # [B, dim, h/p, w/p]
    tokens = x.view(n, (h // patch) * (w // patch), dim)  # flatten(2).transpose(1, 2): made contiguous by the add
    if positions:
        tokens = b.elementwise("add_positions", "add", tokens)
    return tokens


def final_layer(b: GraphBuilder, x: Tensor, patch: int, out_channels: int, height: int, width: int,
                temb: Tensor | None = None) -> Tensor:
    """Modulated LayerNorm, linear to p*p*C_out per token, unpatchify: x[B, L, D] -> [B, C_out, h, w].

    temb[B, E]: the conditioning that AdaLayerNormContinuous projects to (scale, shift);
    None: the modulation comes from a learned table plus the timestep embedding (PixArt), no linear.
    """
    n, _, dim = x.shape
    if temb is not None:
        with b.scope("norm_out"):
            modulation(b, temb, dim, 2)
    h = ada_norm(b, x, "norm_out")
    y = b.linear("proj_out", h, patch * patch * out_channels)  # [B, L, p*p*C_out]
    return b.rearrange("unpatchify", y, n, out_channels, height, width)


def _qkv(b: GraphBuilder, x: Tensor, head_dim: int, qk_norm: bool, names: tuple[str, str, str, str, str],
         bias: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v projections of x[B, L, D] (each [B, L, H*d]), with RMS QK-norm if the model has it."""
    dim = x.shape[-1]
    q, k, v = (b.linear(n, x, dim, bias=bias) for n in names[:3])
    if qk_norm:
        q, k = head_rms_norm(b, q, head_dim, names[3]), head_rms_norm(b, k, head_dim, names[4])
    return q, k, v


def self_attention(b: GraphBuilder, x: Tensor, heads: int, qk_norm: bool = False, rope_qk: bool = False,
                   out: bool = True, bias: bool = True) -> Tensor:
    """Attention of x[B, L, D] to itself: q/k/v, QK-norm, RoPE, attention, output projection (unless `out` is False)."""
    head_dim = x.shape[-1] // heads
    q, k, v = _qkv(b, x, head_dim, qk_norm, ("to_q", "to_k", "to_v", "norm_q", "norm_k"), bias)
    if rope_qk:
        q, k = rope(b, q, "rope_q"), rope(b, k, "rope_k")
    o = b.attention("attention", q, k, v, heads, "self")
    return b.linear("to_out", o, x.shape[-1], bias=bias) if out else o


def joint_attention(b: GraphBuilder, x: Tensor, c: Tensor, heads: int, qk_norm: bool, rope_qk: bool = False,
                    context_out: bool = True, context_first: bool = False) -> tuple[Tensor, Tensor | None]:
    """MMDiT attention over image x[B, L, D] and text c[B, T, D] concatenated: (image out [B, L, D], text out).

    Each stream has its own q/k/v (to_q..., add_q_proj...) and QK-norm; one attention runs over the
    T + L tokens; the output is split back and projected per stream (to_out, to_add_out). The text
    output is None when the block is the last one to read it (`context_out` False, SD3's context_pre_only).
    """
    (n, seq, dim), text = x.shape, c.shape[1]
    head_dim = dim // heads
    img = _qkv(b, x, head_dim, qk_norm, ("to_q", "to_k", "to_v", "norm_q", "norm_k"))
    txt = _qkv(b, c, head_dim, qk_norm, ("add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q", "norm_added_k"))
    parts = [(t, i) if context_first else (i, t) for i, t in zip(img, txt)]
    q, k, v = (b.concat(f"concat_{s}", *p) for s, p in zip("qkv", parts))  # [B, T+L, D]
    if rope_qk:
        q, k = rope(b, q, "rope_q"), rope(b, k, "rope_k")
    o = b.attention("attention", q, k, v, heads, "self")  # [B, T+L, D], split into the two streams (views)
    ox = b.linear("to_out", Tensor((n, seq, dim), o.node), dim)
    oc = b.linear("to_add_out", Tensor((n, text, dim), o.node), dim) if context_out else None
    return ox, oc


def gated_feed_forward(b: GraphBuilder, x: Tensor, hidden: int, norm: str, ff: str) -> Tensor:
    """x + gate * FF(modulate(LayerNorm(x))): the MLP half of an AdaLN-modulated block, x[B, L, D]."""
    h = ada_norm(b, x, norm)
    with b.scope(ff):
        h = feed_forward(b, h, hidden)
    return gated_residual(b, x, h, f"{ff}_residual")
