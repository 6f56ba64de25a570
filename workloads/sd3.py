"""Stable Diffusion 3.5 Large and Medium: CLIP-L + OpenCLIP bigG + T5-XXL, the MMDiT(-X), the 16-channel VAE.

Sources: stabilityai/stable-diffusion-3.5-large and -medium `transformer/config.json`
and `vae/config.json` (see workloads.blocks.mmdit and
workloads.blocks.image_dit_pipeline); Stability AI's SD3.5 announcement and
model cards (Large: 8.1 billion parameters; Medium: 2.5 billion, MMDiT-X).
Defaults: 1024x1024; 28 steps for Large and 40 for Medium (the model cards'
diffusers examples, guidance_scale 3.5 and 4.5); diffusers
StableDiffusion3Pipeline runs classifier-free guidance as one call on the
concatenated conditional and unconditional batch; T5 max_sequence_length 256.
"""

from __future__ import annotations

from workloads.blocks import image_dit_pipeline as pipe
from workloads.blocks.mmdit import SD35_LARGE, SD35_MEDIUM, MMDiTSpec, build_mmdit
from workloads.config import WorkloadConfig
from workloads.workload import Workload

MODES = ("batched", "two-calls", "off")


def sd3_dit(label: str, spec: MMDiTSpec) -> pipe.ImageDiT:
    side = min(pipe.MAX_SIDE, spec.pos_embed_max_size * spec.patch * pipe.LATENT_FACTOR)  # the position table's reach
    return pipe.ImageDiT(label, pipe.SD3_ENCODERS, lambda b, n, h, w, t: build_mmdit(b, spec, n, h, w, t),
                         lambda t5: pipe.CLIP_TOKENS + t5, pipe.VAE_16, MODES, max_side=side)


LARGE = sd3_dit("SD3.5-large", SD35_LARGE)
MEDIUM = sd3_dit("SD3.5-medium", SD35_MEDIUM)


def workload(name: str, dit: pipe.ImageDiT, steps: int, description: str) -> Workload:
    return Workload(
        name=name,
        klass="text-to-image, latent diffusion transformer",
        description=description,
        defaults=WorkloadConfig(height=1024, width=1024, steps=steps, prompt_tokens=256, guidance_mode="batched",
                                dtype="bf16"),
        stages=lambda cfg: pipe.stages(cfg, dit),
        check=lambda cfg: pipe.check(name, dit, cfg),
    )


SD35_LARGE_WORKLOAD = workload("sd3.5-large", LARGE, 28,
                               "SD3.5 Large: CLIP-L + bigG + T5-XXL, 8B MMDiT with QK-norm, batched CFG, 16-ch VAE")
SD35_MEDIUM_WORKLOAD = workload("sd3.5-medium", MEDIUM, 40,
                                "SD3.5 Medium: CLIP-L + bigG + T5-XXL, 2.5B MMDiT-X (dual attention), batched CFG")
