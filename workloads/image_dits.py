"""The image diffusion transformers of the suite (FLUX.1, SD3.5, PixArt-Sigma), in the order `list` shows them."""

from __future__ import annotations

from workloads.workload import Workload

WORKLOADS: tuple[Workload, ...] = ()
