"""The video diffusion transformers of the suite (Wan 2.1, HunyuanVideo, CogVideoX, LTX-Video), in `list` order."""

from __future__ import annotations

from workloads.workload import Workload

WORKLOADS: tuple[Workload, ...] = ()
