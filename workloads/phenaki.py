"""Phenaki: T5-XXL, a bidirectional MaskGIT transformer over video tokens, C-ViViT detokenizer.

Sources: the Phenaki paper (arXiv 2210.02399): clips of 1 + 2k frames at
128x128 (11 frames at 8 fps by default); C-ViViT tokenizes the first frame with
8x8 patches and later frames with 2x8x8 tubelets, so a clip is (1 + k) x 16 x 16
tokens; its decoder runs a causal temporal transformer then a spatial
transformer and projects tokens to pixels; a bidirectional MaskGIT transformer
on T5X text embeddings generates the tokens in parallel. Choices where the
paper's appendix was not available: C-ViViT width 512, MLP 2048, 8 heads, 4
temporal + 4 spatial layers, 32-wide factorized codes, codebook 8192; MaskGIT
24 layers (the task statement), width 2048, MLP 8192, 32 heads (about 1.6B
parameters); 18 parallel steps and classifier-free guidance, the defaults of
the lucidrains/phenaki-pytorch reproduction @94fb2db.
"""

from __future__ import annotations

from emulator.errors import UserError, excerpt
from workloads.blocks import text_encoders, transformer
from workloads.blocks.text_encoders import T5_XXL
from workloads.blocks.token_transformer import TokenTransformerSpec, masked_step, project_text
from workloads.blocks.transformer import TransformerSpec
from workloads.config import WorkloadConfig
from workloads.workload import Workload, graph_stage, guided

SIDE, PATCH, TUBELET = 128, 8, 2
GRID = SIDE // PATCH  # 16 tokens per side
CODEBOOK, CODE_DIM = 8192, 32
MASKGIT = TokenTransformerSpec(TransformerSpec(2048, 32, 8192, "gelu"), 24, CODEBOOK, max_positions=16 * GRID * GRID)
CVIVIT = TransformerSpec(512, 8, 2048, "gelu")
CVIVIT_LAYERS = 4  # temporal, then spatial


def time_steps(frames: int) -> int:
    """Token time steps of a clip: the first frame alone, then one per tubelet of 2 frames."""
    return 1 + (frames - 1) // TUBELET


def detokenize(b, n: int, frames: int):
    """C-ViViT decoder: codes [B, T*16*16] -> video [B, frames, 3, 128, 128]."""
    t, s = time_steps(frames), GRID * GRID
    codes = b.embedding("codebook", b.input(n, t * s), CODEBOOK, CODE_DIM)
    x = b.linear("code_projection", codes, CVIVIT.dim)  # [B, T*S, 512], time-major
    x = b.rearrange("to_time", x, n * s, t, CVIVIT.dim)  # [B*S, T, 512]
    with b.scope("temporal"):
        x = transformer.stack(b, x, CVIVIT, CVIVIT_LAYERS, variant="temporal", causal=True)
    x = b.rearrange("to_space", x, n * t, s, CVIVIT.dim)  # [B*T, S, 512]
    with b.scope("spatial"):
        x = transformer.stack(b, x, CVIVIT, CVIVIT_LAYERS, variant="spatial")
    x = transformer.norm(b, x, CVIVIT.norm).view(n, t * s, CVIVIT.dim)
    first = b.linear("to_pixels_first", x.narrow(1, s), PATCH * PATCH * 3)  # first frame: 8x8 patches
    if t > 1:
        rest = x.view(n, t, s, CVIVIT.dim).narrow(1, t - 1).view(n, (t - 1) * s, CVIVIT.dim)
        b.linear("to_pixels", rest, TUBELET * PATCH * PATCH * 3)  # 2x8x8 tubelets
    return first


def maskgit_step(b, n: int, frames: int, text_tokens: int):
    context = project_text(b, b.input(n, text_tokens, T5_XXL.layer.dim), MASKGIT.layer.dim)
    masked_step(b, MASKGIT, n, time_steps(frames) * GRID * GRID, context)


def stages(cfg: WorkloadConfig):
    f, t = cfg.frames, cfg.prompt_tokens
    tokens = time_steps(f) * GRID * GRID
    return (
        graph_stage("text_encoder", T5_XXL.name, cfg, 1, guided(cfg),
                    lambda b, n: text_encoders.encode(b, T5_XXL, n, t)),
        graph_stage("maskgit", f"bidirectional MaskGIT, 24 layers x 2048, {tokens} video tokens", cfg, cfg.steps,
                    guided(cfg), lambda b, n: maskgit_step(b, n, f, t)),
        graph_stage("cvivit_decoder", f"C-ViViT detokenizer -> {f} frames at 128x128", cfg, 1, cfg.batch,
                    lambda b, n: detokenize(b, n, f)),
    )


def check(cfg: WorkloadConfig) -> None:
    frames = excerpt(cfg.frames)
    if (cfg.frames - 1) % TUBELET:
        raise UserError(f"--frames must be 1 + a multiple of {TUBELET} for phenaki (e.g. 11), got {frames}")
    if time_steps(cfg.frames) > MASKGIT.max_positions // (GRID * GRID):
        raise UserError(f"--frames {frames} is longer than phenaki's {MASKGIT.max_positions // (GRID * GRID)} "
                        "token time steps; generate long videos as several clips")


WORKLOAD = Workload(
    name="phenaki",
    klass="text-to-video, masked transformer (parallel decoding)",
    description="Phenaki: T5-XXL, bidirectional MaskGIT over C-ViViT video tokens, C-ViViT detokenizer",
    defaults=WorkloadConfig(frames=11, steps=18, prompt_tokens=128, guidance=True),
    stages=stages,
    check=check,
)
