"""Workload: one entry of the suite, a pure function from a config to a Pipeline.

An autoregressive workload states its context length: the most prompt plus
generated text tokens its model attends over; configs past it are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from emulator.builder import GraphBuilder, Tensor
from emulator.pipeline import Pipeline, Stage
from workloads import caching
from workloads.config import WorkloadConfig, check_context, resolve


@dataclass(frozen=True)
class Workload:
    name: str
    klass: str  # "text-to-image, latent diffusion"
    description: str  # one line
    defaults: WorkloadConfig  # the knobs it takes are the fields that are not None
    stages: Callable[[WorkloadConfig], tuple[Stage, ...]]
    image_sizes: range | None = None  # valid output sides, if image_size is a knob
    check: Callable[[WorkloadConfig], None] | None = None  # further validation, raising UserError
    context_tokens: int | None = None  # autoregressive: the most prompt + output tokens (its source in the module)

    def config(self, **overrides) -> WorkloadConfig:
        cfg = resolve(self.name, self.defaults, self.image_sizes, **overrides)
        check_context(self.name, cfg, self.context_tokens)
        if self.check:
            self.check(cfg)
        return cfg

    def build(self, **overrides) -> Pipeline:
        cfg = self.config(**overrides)
        return Pipeline(self.name, cfg.asdict(), caching.apply(self.name, cfg, self.stages(cfg)))


def graph_stage(name: str, description: str, cfg: WorkloadConfig, calls: int, batch: int,
                forward: Callable[[GraphBuilder, int], Tensor | None], **kwargs) -> Stage:
    """A Stage whose graph at a per-call batch is `forward(builder, batch)`, ops named under `name`."""

    def build(n: int):
        b = GraphBuilder(cfg.dtype)
        with b.scope(name):
            forward(b, n)
        return b.build()

    return Stage(name, description, build, calls, batch, **kwargs)


def guided(cfg: WorkloadConfig) -> int:
    """Per-call batch of a guided stage: conditional and unconditional halves."""
    return cfg.batch * (2 if cfg.guidance else 1)


def guided_calls(cfg: WorkloadConfig, steps: int) -> tuple[int, int]:
    """(calls, per-call batch) of a denoiser run `steps` times under the config's guidance mode: 'batched'
    doubles the batch, 'two-calls' the calls; 'distilled' and 'off' run one pass per step."""
    if cfg.guidance_mode == "batched":
        return steps, 2 * cfg.batch
    if cfg.guidance_mode == "two-calls":
        return 2 * steps, cfg.batch
    return steps, cfg.batch
