"""PixArt-Sigma XL/2 1024-MS: T5-XXL on 300 tokens, a 0.6B DiT with cross-attention, the SDXL VAE.

Sources: PixArt-alpha/PixArt-Sigma-XL-2-1024-MS `transformer/config.json` (see
workloads.blocks.pixart) and its SDXL VAE (workloads.blocks.image_dit_pipeline);
the PixArt-Sigma paper (arXiv 2403.04692: 0.6B parameters). Defaults: diffusers
PixArtSigmaPipeline at 1024x1024, 20 steps, max_sequence_length 300,
classifier-free guidance as one call on the concatenated batch.
"""

from __future__ import annotations

from workloads.blocks import image_dit_pipeline as pipe
from workloads.blocks.pixart import PIXART_SIGMA, build_pixart
from workloads.config import WorkloadConfig
from workloads.workload import Workload

SIGMA = pipe.ImageDiT("PixArt-Sigma XL/2", pipe.PIXART_ENCODERS,
                      lambda b, n, h, w, t: build_pixart(b, PIXART_SIGMA, n, h, w, t), lambda t5: t5, pipe.VAE_SDXL,
                      ("batched", "two-calls", "off"))

PIXART_SIGMA_WORKLOAD = Workload(
    name="pixart-sigma",
    klass="text-to-image, latent diffusion transformer",
    description="PixArt-Sigma: T5-XXL, 0.6B DiT with cross-attention and AdaLN-single, SDXL VAE",
    defaults=WorkloadConfig(height=1024, width=1024, steps=20, prompt_tokens=300, guidance_mode="batched"),
    stages=lambda cfg: pipe.stages(cfg, SIGMA),
    check=lambda cfg: pipe.check("pixart-sigma", SIGMA, cfg),
)
