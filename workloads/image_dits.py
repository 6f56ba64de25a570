"""The image diffusion transformers of the suite (FLUX.1, SD3.5, PixArt-Sigma), in the order `list` shows them."""

from __future__ import annotations

from workloads import flux, pixart, sd3
from workloads.workload import Workload

WORKLOADS: tuple[Workload, ...] = (
    flux.FLUX1_DEV,
    flux.FLUX1_SCHNELL,
    sd3.SD35_LARGE_WORKLOAD,
    sd3.SD35_MEDIUM_WORKLOAD,
    pixart.PIXART_SIGMA_WORKLOAD,
)
