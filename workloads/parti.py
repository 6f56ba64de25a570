"""Parti (20B): encoder-decoder transformer decoding 1024 image tokens one at a time, ViT-VQGAN decoder.

Source: the Parti paper (arXiv 2206.10789) Table 1 as quoted by secondary
sources (see architectures.csv): 16 encoder and 64 decoder layers, width 4096,
MLP 16384, 64 heads, up to 128 text tokens, 1024 image tokens (32x32 of a
256x256 image), codebook 8192; the ViT-VQGAN decoder fine-tuned for Parti has
32 layers, 16 heads, width 1280, MLP 5120, 8x8 patches. Classifier-free
guidance doubles the batch. Choices: GELU MLPs with biases; a 16000-piece
SentencePiece text vocabulary; the decoder's cross-attention keys and values of
the text are projected once per request, in the encoder stage, and cached;
each decode step runs one token per sequence against a self-attention KV
cache that grows by one. The optional super-resolution module is not modelled.
Context: the encoder's 128 text tokens (the paper's limit above); the decoder's
1024 image tokens are fixed, so prompt_tokens is the one knob bounded by it.
"""

from __future__ import annotations

from workloads.blocks import transformer
from workloads.blocks.token_transformer import TokenTransformerSpec, embed_tokens, logits
from workloads.blocks.transformer import TransformerSpec
from workloads.blocks.vit_decoder import ViTDecoderSpec, vit_decode
from workloads.config import WorkloadConfig
from workloads.workload import Workload, graph_stage, guided

LAYER = TransformerSpec(4096, 64, 16384, "gelu")
ENCODER_LAYERS, DECODER_LAYERS = 16, 64
TEXT_VOCAB = 16000
TEXT_CONTEXT = 128
IMAGE_TOKENS = 1024
DECODER = TokenTransformerSpec(LAYER, DECODER_LAYERS, 8192, IMAGE_TOKENS)
VQGAN = ViTDecoderSpec(TransformerSpec(1280, 16, 5120, "gelu"), layers=32, grid=32, patch=8, code_dim=32,
                       codebook=8192)


def encode(b, n: int, text_tokens: int):
    x = b.embedding("token_embedding", b.input(n, text_tokens), TEXT_VOCAB, LAYER.dim)
    x = transformer.stack(b, x, LAYER, ENCODER_LAYERS)
    x = transformer.norm(b, x, LAYER.norm)
    for i in range(DECODER_LAYERS):  # cross-attention keys/values, cached for all decode steps
        with b.scope(f"decoder.layers.{i}.cross_attn"):
            transformer.project_kv(b, x, LAYER)


def decode_step(b, n: int, text_tokens: int):
    """The first decode step: one token, a KV cache of one position (grows by one per step)."""
    x = embed_tokens(b, DECODER, n, 1)
    cached_kv = (b.input(n, text_tokens, LAYER.dim), b.input(n, text_tokens, LAYER.dim))
    x = transformer.stack(b, x, LAYER, DECODER_LAYERS, variant="causal", causal=True, context_kv=cached_kv,
                          cache_len=1)
    logits(b, DECODER, x)


def stages(cfg: WorkloadConfig):
    t = cfg.prompt_tokens
    return (
        graph_stage("encoder", "text encoder, 16 layers x 4096, + cached cross-attention K/V", cfg, 1, guided(cfg),
                    lambda b, n: encode(b, n, t), weights="parti-encoder"),
        graph_stage("decoder", "autoregressive decoder, 64 layers x 4096, one image token per step", cfg,
                    IMAGE_TOKENS, guided(cfg), lambda b, n: decode_step(b, n, t), kv_growth=1,
                    weights="parti-decoder"),
        graph_stage("vqgan_decoder", "ViT-VQGAN decoder, 32 layers x 1280, 1024 tokens -> 256x256", cfg, 1,
                    cfg.batch, lambda b, n: vit_decode(b, VQGAN, n)),
    )


WORKLOAD = Workload(
    name="parti",
    klass="text-to-image, autoregressive transformer",
    description="Parti 20B: encoder-decoder transformer, 1024 image tokens decoded one by one, ViT-VQGAN decoder",
    defaults=WorkloadConfig(prompt_tokens=TEXT_CONTEXT, guidance=True),
    stages=stages,
    context_tokens=TEXT_CONTEXT,
)
