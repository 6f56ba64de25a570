"""The frozen text encoders of the suite, as token-sequence graphs.

Sources (public configs): CLIP ViT-L/14 text tower and OpenCLIP ViT-bigG/14 text
tower from the Hugging Face configs of stable-diffusion-xl-base-1.0
(`text_encoder/`, `text_encoder_2/`); T5 v1.1 XXL from google/t5-v1_1-xxl
config.json (d_model 4096, d_ff 10240, 64 heads of 64, 24 layers, gated GELU).
T5's relative position bias (an added [heads, L, L] table) is not modelled: it
is computed once per call and is small next to the layers.
"""

from __future__ import annotations

from dataclasses import dataclass

from emulator.builder import GraphBuilder, Tensor
from workloads.blocks import transformer
from workloads.blocks.transformer import TransformerSpec


@dataclass(frozen=True)
class TextEncoderSpec:
    name: str
    layer: TransformerSpec
    layers: int
    vocab: int
    max_tokens: int | None  # learned absolute positions (CLIP); None: relative (T5)
    causal: bool  # CLIP's text tower masks future tokens
    projection: int = 0  # width of a pooled-output projection (OpenCLIP bigG), 0 if none


CLIP_L = TextEncoderSpec("CLIP ViT-L/14 text", TransformerSpec(768, 12, 3072, "quick_gelu"), 12, 49408, 77, True)
OPENCLIP_BIGG = TextEncoderSpec(
    "OpenCLIP ViT-bigG/14 text", TransformerSpec(1280, 20, 5120, "gelu"), 32, 49408, 77, True, projection=1280
)
T5_XXL = TextEncoderSpec(
    "T5 v1.1 XXL encoder", TransformerSpec(4096, 64, 10240, "gated_gelu", norm="rms", bias=False), 24, 32128, None, False
)


def encode(b: GraphBuilder, spec: TextEncoderSpec, batch: int, tokens: int) -> Tensor:
    """ids[B, T] -> hidden states [B, T, D]."""
    if spec.max_tokens is not None and tokens > spec.max_tokens:
        raise ValueError(f"{spec.name} takes at most {spec.max_tokens} tokens, got {tokens}")
    ids = b.input(batch, tokens)
    x = b.embedding("token_embedding", ids, spec.vocab, spec.layer.dim)
    if spec.max_tokens is not None:
        pos = b.embedding("position_embedding", b.input(1, tokens), spec.max_tokens, spec.layer.dim)
        x = b.elementwise("add_positions", "add", x, pos)
    variant = "causal" if spec.causal else "self"
    x = transformer.stack(b, x, spec.layer, spec.layers, variant=variant, causal=spec.causal)
    x = transformer.norm(b, x, spec.layer.norm)
    if spec.projection:  # the end-of-text token's state is gathered, then projected: [B, 1, D] -> [B, 1, P]
        b.linear("text_projection", x.narrow(1, 1), spec.projection, bias=False)
    return x
