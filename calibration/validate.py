"""`python -m calibration validate`: time real PyTorch models and compare with the emulator's prediction.

Each case builds a real model with random weights (diffusers' UNet2DConditionModel
and AutoencoderKL with the SD v1.5 configs; transformers' LlamaForCausalLM with
the LLaMA-2-7B config, or fewer layers with `--small`), times its forward pass
with CUDA events (device view of the whole call: kernels plus the gaps where
the GPU waits for the host) or perf_counter on a CPU, and costs the matching
emulator stage with the given profile. Attention: 'flash' runs PyTorch SDPA
(diffusers' AttnProcessor2_0, transformers' "sdpa"), 'baseline' the unfused
matmul-softmax-matmul (diffusers' AttnProcessor, transformers' "eager").
Writes one CSV row per case.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from workloads.modules import (  # the configs the suite is built from
    LLAMA2_7B,
    SD_UNET,
    SD_VAE,
)


@dataclass
class Case:
    name: str
    batch: int
    size: int  # image side, or tokens
    attention: str


def default_cases(small: bool) -> list[Case]:
    cases = []
    for attention in ("flash", "baseline"):
        cases += [Case("sd-unet", 1, 64, attention), Case("sd-unet", 2, 512, attention),
                  Case("sd-unet", 8, 512, attention), Case("sd-unet", 16, 512, attention),
                  Case("sd-vae-decoder", 1, 512, attention)]
        cases += [Case("llama2-7b-prefill", 1, 128, attention), Case("llama2-7b-prefill", 1, 2048, attention),
                  Case("llama2-7b-decode", 1, 2048, attention)]
    if small:
        cases = [Case(c.name, 1, 64 if c.name.startswith("sd") else 32, c.attention) for c in cases[:6]]
    return cases


def time_call(fn, device: str, warmup: int = 3, repeats: int = 10) -> float:
    import torch

    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) * 1e-3)
        else:
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def _sd(case: Case, device: str, dtype, layers: int | None):
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    latent = case.size // 8
    processor = AttnProcessor2_0() if case.attention == "flash" else AttnProcessor()
    with torch.device(device):
        if case.name == "sd-unet":
            model = UNet2DConditionModel(**SD_UNET).to(dtype).eval()
            x = torch.randn(case.batch, 4, latent, latent, dtype=dtype)
            t = torch.tensor([500] * case.batch)
            text = torch.randn(case.batch, 77, 768, dtype=dtype)
            model.set_attn_processor(processor)
            return lambda: model(x, t, text)
        vae = AutoencoderKL(**SD_VAE).to(dtype).eval()
        vae.set_attn_processor(processor)
        z = torch.randn(case.batch, 4, latent, latent, dtype=dtype)
        return lambda: vae.decode(z)


def _llama(case: Case, device: str, dtype, layers: int | None):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{**LLAMA2_7B, "num_hidden_layers": layers or LLAMA2_7B["num_hidden_layers"]})
    config._attn_implementation = "sdpa" if case.attention == "flash" else "eager"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build the weights in half precision directly (13.5 GB, not 27)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    ids = torch.randint(0, 32000, (case.batch, case.size), device=device)
    if case.name == "llama2-7b-prefill":
        return lambda: model(ids, logits_to_keep=1, use_cache=False)
    from transformers import DynamicCache

    # Decode one token against a cache holding size - 1 positions; the cache is cut back after each step.
    cache = DynamicCache(config=config)
    with torch.no_grad():
        model(ids[:, : case.size - 1], past_key_values=cache, use_cache=True)
    token = ids[:, -1:]

    def step():
        out = model(token, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache.crop(-1)  # drop the token just added
        return out

    return step


def emulator_stage(case: Case, layers: int | None):
    import workloads

    if case.name == "sd-unet":
        return workloads.build("stable-diffusion", batch=case.batch, image_size=case.size, guidance=False,
                               dtype="fp16").stage("unet")
    if case.name == "sd-vae-decoder":
        return workloads.build("stable-diffusion", batch=case.batch, image_size=case.size, guidance=False,
                               dtype="fp16").stage("vae_decoder")
    if case.name == "llama2-7b-prefill":
        return workloads.build("llama2-7b", batch=case.batch, prompt_tokens=case.size, output_tokens=1,
                               dtype="fp16").stage("prefill")
    return workloads.build("llama2-7b", batch=case.batch, prompt_tokens=case.size - 1, output_tokens=2,
                           dtype="fp16").stage("decode")


def validate(device: str, profile_path: str | None, out: Path, small: bool = False, layers: int | None = None):
    import torch

    from emulator.cost import Profile, cost_model, stage_time

    dtype = torch.float16 if device == "cuda" else torch.float32
    if small:
        layers = layers or 2
    rows = []
    fields = ["case", "batch", "size", "attention", "layers", "measured_ms", "predicted_ms",
              "predicted_device_busy_ms", "error", "fallback_ops", "failure"]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for case in default_cases(small):
            row = {"case": case.name, "batch": case.batch, "size": case.size, "attention": case.attention,
                   "layers": layers or ""}
            try:
                build = _sd if case.name.startswith("sd") else _llama
                with torch.no_grad():
                    fn = build(case, device, dtype, layers)
                    measured = time_call(fn, device)
                row["measured_ms"] = round(measured * 1e3, 4)
                if profile_path and not small:
                    model = Profile.from_file(profile_path, case.attention) if profile_path.endswith(".json") \
                        else cost_model(profile_path, case.attention)
                    first, _ = stage_time(emulator_stage(case, layers), model)
                    row.update(predicted_ms=round(first.seconds * 1e3, 4),
                               predicted_device_busy_ms=round(first.device_s * 1e3, 4),
                               error=round((first.seconds - measured) / measured, 4),
                               fallback_ops=first.fallback_ops)
            except Exception as e:  # keep going: one failing case must not lose the others
                row["failure"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
                if device == "cuda" and "device-side assert" in str(e):
                    raise
            finally:
                fn = None
                if device == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            writer.writerow(row)
            f.flush()
            print(row, file=sys.stderr, flush=True)
    return rows
