"""Muse (3B): T5-XXL, a base masked transformer over 256 tokens, a super-resolution transformer over 4096 tokens, VQ-GAN decoder.

Source: the Muse paper (arXiv 2301.00704), Table I of the study and the
paper's appendix tables: base transformer 48 layers, width 2048, MLP 8192, over
16x16 tokens of a 256x256 image, 24 parallel decoding steps; super-resolution:
a 16-layer encoder of the 256 low-resolution tokens, whose output is
concatenated with the projected text as the cross-attention context of 32
layers (width 1024, MLP 4096) over 64x64 tokens of the 512x512 image, 8 steps;
codebook 8192. Choices where the paper is silent: 64 channels per head (32 and
16 heads); GELU MLPs; the super-resolution layers attend over all 4096 tokens
(the paper's multi-axis attention is not modelled); VQ-GAN decoder at f=8 with
256 base channels and 4 ResNet blocks per resolution as the paper's fine-tuned
decoder, channel multipliers [1, 1, 2, 4] (MaskGIT's f=16 VQ-GAN's
[1, 1, 2, 2, 4] with one level fewer), 256-wide codes, no attention.
Classifier-free guidance doubles the batch of every transformer call.
"""

from __future__ import annotations

from workloads.blocks import text_encoders, transformer
from workloads.blocks.conv_decoder import ConvDecoderSpec, decode
from workloads.blocks.text_encoders import T5_XXL
from workloads.blocks.token_transformer import TokenTransformerSpec, embed_tokens, masked_step, project_text
from workloads.blocks.transformer import TransformerSpec
from workloads.config import WorkloadConfig
from workloads.workload import Workload, graph_stage, guided

CODEBOOK = 8192
BASE = TokenTransformerSpec(TransformerSpec(2048, 32, 8192, "gelu"), 48, CODEBOOK, 256)
SR = TokenTransformerSpec(TransformerSpec(1024, 16, 4096, "gelu"), 32, CODEBOOK, 4096)
LOWRES_ENCODER = TokenTransformerSpec(TransformerSpec(1024, 16, 4096, "gelu"), 16, CODEBOOK, 256)
SR_STEPS = 8
BASE_TOKENS, SR_TOKENS = 256, 4096  # 16x16 at 256x256, 64x64 at 512x512
VQ = ConvDecoderSpec(latent_channels=256, channels=(256, 256, 512, 1024), resnets=4, mid_attention=False)


def base_step(b, n: int, text_tokens: int):
    context = project_text(b, b.input(n, text_tokens, T5_XXL.layer.dim), BASE.layer.dim)
    masked_step(b, BASE, n, BASE_TOKENS, context)


def lowres_encoder(b, n: int):
    x = embed_tokens(b, LOWRES_ENCODER, n, BASE_TOKENS)
    transformer.stack(b, x, LOWRES_ENCODER.layer, LOWRES_ENCODER.layers)


def sr_step(b, n: int, text_tokens: int):
    text = project_text(b, b.input(n, text_tokens, T5_XXL.layer.dim), SR.layer.dim)
    lowres = b.input(n, BASE_TOKENS, SR.layer.dim)  # the low-res encoder's output, computed once
    context = b.concat("context", text, lowres, dim=1)  # [B, T + 256, 1024]
    masked_step(b, SR, n, SR_TOKENS, context)


def vq_decode(b, n: int):
    codes = b.embedding("codebook", b.input(n, SR_TOKENS), CODEBOOK, VQ.latent_channels)  # [B, 4096, 256]
    z = b.rearrange("to_image", codes, n, VQ.latent_channels, 64, 64)
    decode(b, VQ, z)


def stages(cfg: WorkloadConfig):
    t = cfg.prompt_tokens
    return (
        graph_stage("text_encoder", T5_XXL.name, cfg, 1, guided(cfg),
                    lambda b, n: text_encoders.encode(b, T5_XXL, n, t)),
        graph_stage("base_transformer", "masked transformer, 48 layers x 2048, 256 tokens", cfg, cfg.steps,
                    guided(cfg), lambda b, n: base_step(b, n, t)),
        graph_stage("sr_lowres_encoder", "low-res token encoder, 16 layers x 1024", cfg, 1, guided(cfg),
                    lowres_encoder),
        graph_stage("sr_transformer", "super-resolution transformer, 32 layers x 1024, 4096 tokens", cfg, SR_STEPS,
                    guided(cfg), lambda b, n: sr_step(b, n, t)),
        graph_stage("vq_decoder", "VQ-GAN decoder 64x64 tokens -> 512x512", cfg, 1, cfg.batch, vq_decode),
    )


WORKLOAD = Workload(
    name="muse",
    klass="text-to-image, masked transformer (parallel decoding)",
    description="Muse 3B: T5-XXL, base transformer on 256 tokens x 24 steps, SR transformer on 4096 tokens, VQ-GAN",
    defaults=WorkloadConfig(steps=24, prompt_tokens=128, guidance=True),
    stages=stages,
)
