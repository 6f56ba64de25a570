"""The one registry of workloads, keyed by name: the study's suite in its order, then image and video DiTs, LLMs."""

from __future__ import annotations

from emulator.errors import UserError, clip, excerpt
from emulator.pipeline import Pipeline
from workloads import image_dits, imagen, llama2, make_a_video, muse, parti, phenaki, prod_image, stable_diffusion
from workloads import llama3, video_dits
from workloads.workload import Workload

WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        llama2.WORKLOAD,
        imagen.WORKLOAD,
        stable_diffusion.WORKLOAD,
        muse.WORKLOAD,
        parti.WORKLOAD,
        prod_image.WORKLOAD,
        make_a_video.WORKLOAD,
        phenaki.WORKLOAD,
        *image_dits.WORKLOADS,
        *video_dits.WORKLOADS,
        *llama3.WORKLOADS,
    )
}


# The characterization study's suite (its experiments reproduce its figures over these), in its order.
STUDY_SUITE: tuple[str, ...] = (llama2.WORKLOAD.name, imagen.WORKLOAD.name, stable_diffusion.WORKLOAD.name,
                                muse.WORKLOAD.name, parti.WORKLOAD.name, prod_image.WORKLOAD.name,
                                make_a_video.WORKLOAD.name, phenaki.WORKLOAD.name)


def get(name: str) -> Workload:
    if name not in WORKLOADS:
        raise UserError(f"unknown workload {excerpt(name)}; `python -m emulator list` lists them "
                        f"({clip(', '.join(WORKLOADS), 60)})")
    return WORKLOADS[name]


def build(name: str, **knobs) -> Pipeline:
    """The Pipeline of one request of workload `name` with the given knobs (None: default)."""
    return get(name).build(**knobs)
