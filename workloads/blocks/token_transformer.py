"""A transformer over image or video tokens, conditioned on text: the generators of Muse, Phenaki and Parti.

Code ids [B, L] are embedded, learned positions added, the text embedding
projected to the model width, and `layers` layers of self-attention,
cross-attention to the text and MLP run; the logits over the codebook are
followed by the softmax that sampling needs ([B, L, codebook]).
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from workloads.blocks import transformer
from workloads.blocks.transformer import TransformerSpec


@dataclass(frozen=True)
class TokenTransformerSpec:
    layer: TransformerSpec
    layers: int
    codebook: int  # image-token vocabulary
    max_positions: int  # learned position table


def embed_tokens(b: GraphBuilder, spec: TokenTransformerSpec, batch: int, tokens: int) -> Tensor:
    """ids[B, L] -> [B, L, D] with learned positions; one extra id for [MASK]."""
    x = b.embedding("token_embedding", b.input(batch, tokens), spec.codebook + 1, spec.layer.dim)
    pos = b.embedding("position_embedding", b.input(1, tokens), spec.max_positions, spec.layer.dim)
    return b.elementwise("add_positions", "add", x, pos)


def logits(b: GraphBuilder, spec: TokenTransformerSpec, x: Tensor) -> Tensor:
    """Final norm, projection to the codebook, and the sampling softmax."""
    x = transformer.norm(b, x, spec.layer.norm)
    return b.softmax("sample", b.linear("to_logits", x, spec.codebook))


def masked_step(b: GraphBuilder, spec: TokenTransformerSpec, batch: int, tokens: int, context: Tensor,
                variant: str = "self") -> Tensor:
    """One parallel-decoding (MaskGIT) step over all `tokens` positions, cross-attending to `context`[B, T, D]."""
    x = embed_tokens(b, spec, batch, tokens)
    x = transformer.stack(b, x, spec.layer, spec.layers, variant=variant, context=context)
    return logits(b, spec, x)


def project_text(b: GraphBuilder, text: Tensor, dim: int) -> Tensor:
    """The frozen text encoder's output [B, T, Dt] projected to the model width [B, T, dim]."""
    return b.linear("text_projection", text, dim)
