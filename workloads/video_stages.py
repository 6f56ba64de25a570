"""The stages every video DiT workload shares: the latent grid, a T5-family text stage, the transformer, the VAE.

A video DiT request runs its text encoder(s) once (twice the batch, or twice
the calls, under guidance), its transformer `steps` times as its guidance mode
says (`guided_calls`), and its causal video VAE decoder once. The latent grid
is frames compressed by the VAE's time factor (F - 1) / t + 1, and height and
width by its space factor.
"""

from __future__ import annotations

from typing import Callable

from emulator.pipeline import Stage
from workloads.blocks import text_encoders, video_vae
from workloads.blocks.text_encoders import TextEncoderSpec
from workloads.blocks.video_dit import VideoDiTSpec, denoise
from workloads.config import WorkloadConfig
from workloads.workload import graph_stage, guided_calls


def latent_grid(cfg: WorkloadConfig, vae: video_vae.VideoDecoderSpec) -> tuple[int, int, int]:
    """(latent frames, height, width) of a request's video."""
    return (cfg.frames - 1) // vae.time_factor + 1, cfg.height // vae.space_factor, cfg.width // vae.space_factor


def text_stage(cfg: WorkloadConfig, name: str, description: str, encode: Callable) -> Stage:
    """A text encoder run once per request, its batch or calls doubled under guidance; encode(b, n)."""
    calls, batch = guided_calls(cfg, 1)
    return graph_stage(name, description, cfg, calls, batch, encode)


def t5_stage(cfg: WorkloadConfig, spec: TextEncoderSpec, tokens: int) -> Stage:
    """The T5-family encoder stage on `tokens` padded tokens."""
    return text_stage(cfg, "text_encoder", f"{spec.name}, {tokens} tokens",
                      lambda b, n: text_encoders.encode(b, spec, n, tokens))


def transformer_stage(cfg: WorkloadConfig, spec: VideoDiTSpec, label: str, grid: tuple[int, int, int],
                      text_tokens: int) -> Stage:
    """The DiT, `steps` times under the config's guidance mode, over the latent grid's video tokens."""
    calls, batch = guided_calls(cfg, cfg.steps)
    f, h, w = grid
    description = f"{label}, {spec.tokens(f, h, w)} video tokens"
    return graph_stage("transformer", description, cfg, calls, batch,
                       lambda b, n: denoise(b, spec, n, f, h, w, text_tokens))


def vae_stage(cfg: WorkloadConfig, vae: video_vae.VideoDecoderSpec, grid: tuple[int, int, int]) -> Stage:
    """The causal video VAE decoder, once per video: [B, C, f, h, w] latents -> frames."""
    f, h, w = grid
    return graph_stage("vae_decoder", f"{vae.name} -> {cfg.frames} frames at {cfg.height}x{cfg.width}", cfg, 1,
                       cfg.batch, lambda b, n: video_vae.decode(b, vae, b.input(n, vae.latent_channels, f, h, w)))
