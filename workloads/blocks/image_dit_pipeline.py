"""What runs around an image diffusion transformer: its text encoders, its VAE decoder, its stages and knob checks.

Text encoders (specs in `workloads.blocks.text_encoders`): FLUX.1 runs CLIP
ViT-L/14 (CLIPTextModel, its pooled output) on 77 tokens and T5 v1.1 XXL on
`max_sequence_length` tokens (FluxPipeline); SD3.5 runs CLIP-L and OpenCLIP
bigG as CLIPTextModelWithProjection (77 tokens, pooled output projected) and
T5-XXL on 256 tokens, then pads the CLIP states to 4096 channels and
concatenates them with T5's (StableDiffusion3Pipeline); PixArt-Sigma runs T5-XXL
on 300 tokens (PixArtSigmaPipeline). Pipelines pad prompts to the full length,
so the padded length is what runs. FluxPipeline and StableDiffusion3Pipeline
refuse more than 512 T5 tokens.

VAE decoders (diffusers AutoencoderKL): FLUX.1 and SD3.5 share one design,
black-forest-labs/FLUX.1-dev and stabilityai/stable-diffusion-3.5-large
`vae/config.json`: 16 latent channels, block_out_channels [128, 256, 512, 512],
layers_per_block 2, f=8, use_quant_conv and use_post_quant_conv false.
PixArt-Sigma decodes with the SDXL VAE (PixArt-alpha/pixart_sigma_sdxlvae_T5_diffusers
`vae/`): 4 latent channels, the same widths, with the post-quant conv.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from emulator.builder import GraphBuilder
from emulator.errors import UserError, excerpt
from workloads.blocks import text_encoders
from workloads.blocks.conv_decoder import ConvDecoderSpec, decode
from workloads.blocks.text_encoders import CLIP_L, OPENCLIP_BIGG, T5_XXL, TextEncoderSpec
from workloads.config import WorkloadConfig
from workloads.workload import graph_stage, guided_calls

CLIP_L_PROJECTED = replace(CLIP_L, name="CLIP ViT-L/14 text (projected)", projection=768)
VAE_16 = ConvDecoderSpec(latent_channels=16, channels=(128, 256, 512, 512), resnets=3, mid_attention=True,
                         post_quant_conv=False)
VAE_SDXL = ConvDecoderSpec(latent_channels=4, channels=(128, 256, 512, 512), resnets=3, mid_attention=True)
LATENT_FACTOR = 8
SIDE_STEP = 16  # 2x2 patches of the image/8 latent
MAX_SIDE = 4096
MAX_T5_TOKENS = 512
CLIP_TOKENS = 77


@dataclass(frozen=True)
class Encoder:
    spec: TextEncoderSpec
    scope: str  # the pipeline's attribute: text_encoder, text_encoder_2, ...
    tokens: int | None = None  # fixed length (CLIP); None: the prompt_tokens knob (T5)


@dataclass(frozen=True)
class ImageDiT:
    """One image DiT pipeline: its encoders, its denoiser's forward, its VAE and what it accepts."""

    label: str  # "FLUX.1-dev"
    encoders: tuple[Encoder, ...]
    denoise: Callable[[GraphBuilder, int, int, int, int], object]  # (builder, batch, latent h, w, text tokens read)
    context_tokens: Callable[[int], int]  # T5 tokens -> text tokens the denoiser reads
    vae: ConvDecoderSpec
    modes: tuple[str, ...]  # guidance modes the model supports
    max_side: int = MAX_SIDE
    packed: bool = False  # the pipeline packs 2x2 latent patches into tokens and unpacks before decoding (FLUX)


def check(name: str, dit: ImageDiT, cfg: WorkloadConfig) -> None:
    """Sides are multiples of 16 within the model's range; guidance mode supported; T5 tokens within 512."""
    for key in ("height", "width"):
        side = getattr(cfg, key)
        if side % SIDE_STEP or side > dit.max_side:
            raise UserError(f"--{key} {excerpt(side)} is not valid for {name}: use a multiple of {SIDE_STEP} "
                            f"from {SIDE_STEP} to {dit.max_side}")
    if cfg.guidance_mode not in dit.modes:
        raise UserError(f"--guidance-mode {cfg.guidance_mode} is not supported by {name}; it runs {', '.join(dit.modes)}")
    if cfg.prompt_tokens > MAX_T5_TOKENS:
        raise UserError(f"--prompt-tokens {cfg.prompt_tokens} exceeds the {MAX_T5_TOKENS} T5 tokens {name} accepts")


def text_batch(cfg: WorkloadConfig) -> int:
    """Prompts encoded per request: classifier-free guidance encodes the negative prompt too."""
    return cfg.batch * (2 if cfg.guidance_mode in ("batched", "two-calls") else 1)


def encode(b: GraphBuilder, dit: ImageDiT, batch: int, t5_tokens: int) -> None:
    """Every text encoder once on its tokens; SD3 joins the CLIP states with T5's ([B, 77 + T, 4096])."""
    for enc in dit.encoders:
        with b.scope(enc.scope):
            text_encoders.encode(b, enc.spec, batch, enc.tokens or t5_tokens)
    if dit.context_tokens(t5_tokens) != t5_tokens:
        b.concat("join_text", b.input(batch, CLIP_TOKENS, 4096), b.input(batch, t5_tokens, 4096))


def stages(cfg: WorkloadConfig, dit: ImageDiT) -> tuple:
    """Text encoder(s) once, the transformer `steps` times (calls and batch by guidance mode), VAE decoder once."""
    lh, lw = cfg.height // LATENT_FACTOR, cfg.width // LATENT_FACTOR
    calls, batch = guided_calls(cfg, cfg.steps)
    tokens = dit.context_tokens(cfg.prompt_tokens)
    names = " + ".join(f"{e.spec.name} ({e.tokens or cfg.prompt_tokens} tokens)" for e in dit.encoders)

    def decode_latent(b, n):
        z = b.input(n, dit.vae.latent_channels, lh, lw)
        if dit.packed:  # [B, L, 64] tokens back to [B, 16, h, w]
            z = b.rearrange("unpack", z, *z.shape)
        decode(b, dit.vae, b.elementwise("unscale", "mul", z))  # latents / scaling (+ shift)

    return (
        graph_stage("text_encoder", names, cfg, 1, text_batch(cfg), lambda b, n: encode(b, dit, n, cfg.prompt_tokens)),
        graph_stage("transformer", f"{dit.label} transformer, latent {lh}x{lw}, {tokens} text tokens", cfg, calls,
                    batch, lambda b, n: dit.denoise(b, n, lh, lw, tokens)),
        graph_stage("vae_decoder", f"VAE decoder {lh}x{lw} -> {cfg.height}x{cfg.width}", cfg, 1, cfg.batch,
                    decode_latent),
    )


T5 = Encoder(T5_XXL, "text_encoder_2")
FLUX_ENCODERS = (Encoder(CLIP_L, "text_encoder", CLIP_TOKENS), T5)
SD3_ENCODERS = (Encoder(CLIP_L_PROJECTED, "text_encoder", CLIP_TOKENS),
                Encoder(OPENCLIP_BIGG, "text_encoder_2", CLIP_TOKENS), Encoder(T5_XXL, "text_encoder_3"))
PIXART_ENCODERS = (Encoder(T5_XXL, "text_encoder"),)
