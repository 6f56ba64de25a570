"""Transformer layers on token sequences x[B, L, D], as eager PyTorch runs them.

One spec covers the suite's transformers: CLIP and OpenCLIP text towers
(LayerNorm, biased projections, quick-GELU or GELU MLP), T5 v1.1 (RMSNorm, no
biases, gated GELU), LLaMA (RMSNorm, RoPE, SwiGLU; LLaMA 3's grouped-query
attention: `kv_heads` K/V heads, each shared by heads / kv_heads query heads),
and the encoder-decoder and MaskGIT transformers of Parti, Muse and Phenaki
(self plus cross attention).
Every sub-layer is pre-norm with a residual add. Q, K and V are separate
projections, as in the Hugging Face implementations.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor


@dataclass(frozen=True)
class TransformerSpec:
    dim: int
    heads: int
    mlp: int  # hidden width of the MLP
    activation: str  # gelu | quick_gelu | geglu | gated_gelu | swiglu
    norm: str = "layer"  # layer | rms
    bias: bool = True  # biases on the attention output and MLP projections
    qkv_bias: bool | None = None  # biases on Q, K, V; default: as `bias`
    rope: bool = False
    kv_heads: int | None = None  # grouped-query attention's K/V heads; None: one per query head

    @property
    def has_qkv_bias(self) -> bool:
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def kv_dim(self) -> int:
        """Width of the K and V projections: kv_heads x head_dim (dim for multi-head attention)."""
        return self.head_dim * (self.kv_heads or self.heads)


def norm(b: GraphBuilder, x: Tensor, kind: str) -> Tensor:
    return b.rms_norm("norm", x) if kind == "rms" else b.layer_norm("norm", x)


def project_kv(b: GraphBuilder, source: Tensor, spec: TransformerSpec) -> tuple[Tensor, Tensor]:
    """Keys and values of `source`[B, L, Dc]: two [B, L, kv_heads x head_dim] projections."""
    bias = spec.has_qkv_bias
    return b.linear("k", source, spec.kv_dim, bias=bias), b.linear("v", source, spec.kv_dim, bias=bias)


def attend(b: GraphBuilder, x: Tensor, spec: TransformerSpec, variant: str, kv: tuple[Tensor, Tensor] | None = None,
           causal: bool = False, cache_len: int | None = None) -> Tensor:
    """Attention of x[B, Lq, D]; returns the output projection [B, Lq, D].

    kv: precomputed keys/values (cross-attention to a context); None projects
    them from x (self-attention). cache_len: the self-attention reads a KV cache
    holding `cache_len` positions, this call's included (decode).
    """
    q = b.linear("q", x, spec.dim, bias=spec.has_qkv_bias)
    if kv is None:
        kv = project_kv(b, x, spec)
        if spec.rope:
            q = b.elementwise("rope_q", "rope", q)
            kv = (b.elementwise("rope_k", "rope", kv[0]), kv[1])
    k, v = kv
    if cache_len is not None:
        # This call's keys/values are appended to the cache; attention reads all of it.
        k, v = Tensor((k.shape[0], cache_len, k.shape[2]), k.node), Tensor((v.shape[0], cache_len, v.shape[2]), v.node)
    o = b.attention(variant, q, k, v, spec.heads, variant, causal=causal, kv_cache=cache_len is not None)
    return b.linear("o", o, spec.dim, bias=spec.bias)


def mlp(b: GraphBuilder, x: Tensor, spec: TransformerSpec) -> Tensor:
    if spec.activation in ("swiglu", "gated_gelu"):  # LLaMA, T5 v1.1: separate gate and up
        gate = b.linear("gate", x, spec.mlp, bias=spec.bias)
        up = b.linear("up", x, spec.mlp, bias=spec.bias)
        h = b.elementwise(spec.activation, "swiglu" if spec.activation == "swiglu" else "geglu", gate, up)
    elif spec.activation == "geglu":  # one projection to [value, gate]
        h = b.gated("geglu", "geglu", b.linear("up", x, 2 * spec.mlp, bias=spec.bias))
    else:
        h = b.elementwise(spec.activation, spec.activation, b.linear("up", x, spec.mlp, bias=spec.bias))
    return b.linear("down", h, spec.dim, bias=spec.bias)


def layer(b: GraphBuilder, x: Tensor, spec: TransformerSpec, variant: str = "self", causal: bool = False,
          context: Tensor | None = None, context_kv: tuple[Tensor, Tensor] | None = None,
          cache_len: int | None = None, self_attention: bool = True) -> Tensor:
    """One layer: self-attention (unless `self_attention` is False), cross-attention
    (to `context`, or to keys/values `context_kv` projected earlier), and an MLP
    unless `spec.mlp` is 0."""
    if self_attention:
        with b.scope("self_attn"):
            h = attend(b, norm(b, x, spec.norm), spec, variant, causal=causal, cache_len=cache_len)
            x = b.add_("residual", x, h)
    if context is not None or context_kv is not None:
        with b.scope("cross_attn"):
            h = norm(b, x, spec.norm)
            kv = context_kv if context_kv is not None else project_kv(b, context, spec)
            x = b.add_("residual", x, attend(b, h, spec, "cross", kv=kv))
    if spec.mlp:
        with b.scope("mlp"):
            x = b.add_("residual", x, mlp(b, norm(b, x, spec.norm), spec))
    return x


def stack(b: GraphBuilder, x: Tensor, spec: TransformerSpec, layers: int, **kwargs) -> Tensor:
    for i in range(layers):
        with b.scope(f"layers.{i}"):
            x = layer(b, x, spec, **kwargs)
    return x
