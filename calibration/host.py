"""The host's time per eager PyTorch op: the bare kernel dispatch, and what real model code costs.

`dispatch_seconds`: a chain of in-place adds on a 1-element tensor. Each kernel
does almost nothing on the device, so on a GPU the chain's wall time over its
length is the time the host needs to dispatch one kernel; on a CPU it is the
per-op overhead the kernels' own times include.

`framework_seconds_per_op`: real model code costs the host more per op than a
bare dispatch (module calls, views and reshapes, the extra small kernels of a
Python RMSNorm or rotary embedding). It runs the reference implementations
(diffusers' SD v1.5 UNet on an 8x8 latent, transformers' LLaMA with the 7B
layer count and a tiny width, one token) where the device work is negligible,
so the wall time is the host's, and divides it by the number of ops of the
emulator's graph of the same model: host seconds per graph op.
"""

from __future__ import annotations

import statistics
import time


def dispatch_seconds(device: str, chain: int = 2000, repeats: int = 7) -> float:
    import torch

    x = torch.zeros(1, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(200):
        x.add_(1.0)
    sync()
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(chain):
            x.add_(1.0)
        sync()
        samples.append((time.perf_counter() - t) / chain)
    return statistics.median(samples)


def framework_seconds_per_op(device: str) -> dict | None:
    """Host seconds per emulator graph op of host-bound real models; None without diffusers/transformers."""
    try:
        import diffusers  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        return None
    import torch

    import workloads
    from calibration.timers import time_call
    from workloads.modules import SD_UNET

    dtype = torch.float16 if device == "cuda" else torch.float32
    results = {}
    with torch.no_grad():
        from diffusers import UNet2DConditionModel

        with torch.device(device):
            unet = UNet2DConditionModel(**SD_UNET).to(dtype).eval()
            x, t, text = torch.randn(1, 4, 8, 8, dtype=dtype), torch.tensor([500]), torch.randn(1, 77, 768, dtype=dtype)
        ops = len(workloads.build("stable-diffusion", image_size=64, guidance=False).stage("unet").graph())
        results["sd-unet"] = time_call(lambda: unet(x, t, text), device) / ops
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(hidden_size=256, intermediate_size=688, num_hidden_layers=32, num_attention_heads=4,
                             num_key_value_heads=4, vocab_size=1000)
        with torch.device(device):
            llama = LlamaForCausalLM(config).to(dtype).eval()
        ids = torch.randint(0, 1000, (1, 1), device=device)
        ops = len(workloads.build("llama2-7b", prompt_tokens=1, output_tokens=1).stage("prefill").graph())
        results["llama"] = time_call(lambda: llama(ids, use_cache=False, logits_to_keep=1), device) / ops
    return {"s_per_op": statistics.mean(results.values()), "by_model": results}
