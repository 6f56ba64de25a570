"""FLUX.1-dev and FLUX.1-schnell: CLIP-L (pooled) + T5-XXL, the 12B FLUX transformer, the 16-channel VAE.

Sources: black-forest-labs/FLUX.1-dev and FLUX.1-schnell `transformer/config.json`
and `vae/config.json` (see workloads.blocks.flux and
workloads.blocks.image_dit_pipeline), model cards ("a 12 billion parameter
rectified flow transformer"). Defaults: diffusers FluxPipeline runs 28 steps
at 1024x1024 with max_sequence_length 512; FLUX.1-dev is guidance-distilled
(the guidance scale enters as an embedding: one transformer pass per step;
true CFG with a negative prompt, `true_cfg_scale`, runs two passes per step).
FLUX.1-schnell is timestep-distilled: 4 steps, no guidance, 256 T5 tokens
(its model card's example: guidance_scale 0, max_sequence_length 256).
"""

from __future__ import annotations

from workloads.blocks import image_dit_pipeline as pipe
from workloads.blocks.flux import FLUX_DEV, FLUX_SCHNELL, FluxSpec, build_flux
from workloads.config import WorkloadConfig
from workloads.workload import Workload


def flux_dit(label: str, spec: FluxSpec, modes: tuple[str, ...]) -> pipe.ImageDiT:
    return pipe.ImageDiT(label, pipe.FLUX_ENCODERS, lambda b, n, h, w, t: build_flux(b, spec, n, h, w, t),
                         lambda t5: t5, pipe.VAE_16, modes, packed=True)


DEV = flux_dit("FLUX.1-dev", FLUX_DEV, ("distilled", "two-calls"))
SCHNELL = flux_dit("FLUX.1-schnell", FLUX_SCHNELL, ("off",))


def workload(name: str, dit: pipe.ImageDiT, steps: int, tokens: int, mode: str, description: str) -> Workload:
    return Workload(
        name=name,
        klass="text-to-image, latent diffusion transformer",
        description=description,
        defaults=WorkloadConfig(height=1024, width=1024, steps=steps, prompt_tokens=tokens, guidance_mode=mode,
                                dtype="bf16"),
        stages=lambda cfg: pipe.stages(cfg, dit),
        check=lambda cfg: pipe.check(name, dit, cfg),
    )


FLUX1_DEV = workload("flux1-dev", DEV, 28, 512, "distilled",
                     "FLUX.1-dev: CLIP-L + T5-XXL, 12B double/single-stream MMDiT, guidance-distilled, 16-ch VAE")
FLUX1_SCHNELL = workload("flux1-schnell", SCHNELL, 4, 256, "off",
                         "FLUX.1-schnell: CLIP-L + T5-XXL, 12B MMDiT, 4 timestep-distilled steps, 16-ch VAE")
