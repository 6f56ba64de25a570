"""The video diffusion transformers of the suite (CogVideoX, HunyuanVideo, Wan 2.1, LTX-Video), in `list` order."""

from __future__ import annotations

from workloads import cogvideox, hunyuan_video, ltx_video, wan
from workloads.workload import Workload

WORKLOADS: tuple[Workload, ...] = (
    cogvideox.WORKLOAD,
    hunyuan_video.WORKLOAD,
    wan.WAN_1_3B_WORKLOAD,
    wan.WAN_14B_WORKLOAD,
    ltx_video.WORKLOAD,
)
