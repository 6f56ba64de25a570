"""Text encoders of the video DiTs that the suite's text_encoders module lacks.

- umT5-XXL encoder (Wan 2.1): the T5 v1.1 XXL encoder shape (d_model 4096, d_ff 10240, 64 heads, 24 layers,
  gated GELU) with umT5's 256,384-token vocabulary (google/umt5-xxl config.json); Wan pads prompts to 512
  tokens (WanPipeline max_sequence_length). umT5's per-layer relative position bias is not modelled, as for T5.
- LLaVA-LLaMA-3-8B as HunyuanVideo's text encoder (hunyuanvideo-community/HunyuanVideo text_encoder: a
  LlamaModel, hidden 4096, 32 layers, 32 query heads and 8 key/value heads of 128, MLP 14336, vocabulary
  128,256). HunyuanVideoPipeline wraps the prompt in a template, tokenizes to 256 + 95 tokens and crops the
  95 template tokens after the encoder, which runs every layer (it keeps the states 2 layers before the end).
  Grouped-query attention: K and V are projected to 8 heads and shared by 4 query heads each; the attention
  is Attention(heads=32, kv_heads=8): the FLOPs of 32 heads, the K/V reads of 8 (SDPA with enable_gqa).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from emulator.builder import GraphBuilder, Tensor
from workloads.blocks.text_encoders import T5_XXL

UMT5_XXL = replace(T5_XXL, name="umT5-XXL encoder", vocab=256384)
UMT5_TOKENS = 512


@dataclass(frozen=True)
class DecoderLMSpec:
    name: str
    dim: int
    layers: int
    heads: int
    kv_heads: int
    mlp: int
    vocab: int

    @property
    def kv_dim(self) -> int:
        return self.dim // self.heads * self.kv_heads


LLAVA_LLAMA3_8B = DecoderLMSpec("LLaVA-LLaMA-3-8B (text only)", 4096, 32, 32, 8, 14336, 128256)
LLM_TOKENS, LLM_TEMPLATE_TOKENS = 256, 95


def llm_layer(b: GraphBuilder, spec: DecoderLMSpec, x: Tensor) -> Tensor:
    """LLaMA layer on x[B, T, D]: RMSNorm, causal GQA attention with RoPE, RMSNorm, SwiGLU MLP."""
    with b.scope("self_attn"):
        h = b.rms_norm("norm", x)
        q = b.elementwise("rope_q", "rope", b.linear("q", h, spec.dim, bias=False))
        k = b.elementwise("rope_k", "rope", b.linear("k", h, spec.kv_dim, bias=False))
        v = b.linear("v", h, spec.kv_dim, bias=False)
        o = b.attention("causal", q, k, v, spec.heads, "causal", causal=True)  # k, v [B, T, kv_dim]: kv_heads
        x = b.add_("residual", x, b.linear("o", o, spec.dim, bias=False))
    with b.scope("mlp"):
        h = b.rms_norm("norm", x)
        g = b.elementwise("swiglu", "swiglu", b.linear("gate", h, spec.mlp, bias=False),
                          b.linear("up", h, spec.mlp, bias=False))
        return b.add_("residual", x, b.linear("down", g, spec.dim, bias=False))


def encode_llm(b: GraphBuilder, spec: DecoderLMSpec, batch: int, tokens: int) -> Tensor:
    """ids[B, T] -> hidden states [B, T, D] after every layer (no LM head)."""
    x = b.embedding("token_embedding", b.input(batch, tokens), spec.vocab, spec.dim)
    for i in range(spec.layers):
        with b.scope(f"layers.{i}"):
            x = llm_layer(b, spec, x)
    return x
