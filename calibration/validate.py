"""`python -m calibration validate`: time real PyTorch models and compare with the emulator's prediction.

Each case builds a real model with random weights from its config
(`workloads.modules`: diffusers' UNet2DConditionModel and AutoencoderKL with the
SD v1.5 configs, UNet3DConditionModel with its default text-to-video config,
transformers' LlamaForCausalLM with the LLaMA-2-7B config), at full size on a
GPU and reduced (resolution, frames, batch, depth: stated per case) on a CPU.
It times the forward call (CUDA events around the whole call on a GPU,
perf_counter on a CPU; median of 10 after 3 warm-ups; on a CPU with a
measured profile, median of 5 calls, each taken to the profile's speed by
sentinel kernels of the profile read before and after it
(`calibration.sentinels`), since a shared machine's speed drifts by tens of
percent between the calibration and now, and within minutes; the raw median is
kept beside it), measures the time per
operator category with the PyTorch profiler (`calibration.categories`), lowers
the same module with the frontend (`workloads.frontend`) and costs that graph
with the profile. Attention 'flash' runs PyTorch SDPA (diffusers'
AttnProcessor2_0, transformers' "sdpa"), 'baseline' the unfused
matmul-softmax-matmul (AttnProcessor, "eager"); the lowering sees whichever
runs. Writes one CSV row per case and prints the table. With `--isolated` it
also times each distinct kernel of the lowered graph alone, right after the
model (`calibration.isolated`), so that an error splits into the kernels
composing differently in the model and the profile differing from today's
kernels.
"""

from __future__ import annotations

import csv
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from emulator.ops import CATEGORIES
from workloads.modules import (  # the configs the suite is built from
    LLAMA2_7B,
    SD_UNET,
    SD_VAE,
)

UNET3D = {"sample_size": 32, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
              "block_out_channels": (320, 640, 1280, 1280), "cross_attention_dim": 1024, "attention_head_dim": 64,
              "norm_num_groups": 32}  # diffusers' defaults: a ModelScope-class text-to-video UNet
MODELS = ("sd-unet", "sd-vae-decoder", "unet3d", "llama2-7b-prefill", "llama2-7b-decode")


@dataclass
class Case:
    name: str
    batch: int
    size: int  # image side, or tokens
    attention: str
    frames: int = 0
    layers: int = 0  # LLM depth (0: the full 32)

    @property
    def label(self) -> str:
        parts = [self.name, f"b{self.batch}", f"{self.size}"]
        parts += [f"f{self.frames}"] if self.frames else []
        parts += [f"{self.layers}L"] if self.layers else []
        return "-".join(parts)


def default_cases(device: str, models: tuple[str, ...] = MODELS,
                  attentions: tuple[str, ...] = ("flash", "baseline")) -> list[Case]:
    if device == "cuda":  # full size, fp16
        sizes = [Case("sd-unet", 2, 512, ""), Case("sd-unet", 8, 512, ""), Case("sd-vae-decoder", 1, 512, ""),
                 Case("unet3d", 1, 256, "", frames=16), Case("llama2-7b-prefill", 1, 128, ""),
                 Case("llama2-7b-prefill", 1, 2048, ""), Case("llama2-7b-decode", 1, 2048, "")]
    else:  # a 2-core CPU in fp32: lower resolution, fewer frames, fewer LLM layers
        sizes = [Case("sd-unet", 1, 256, ""), Case("sd-vae-decoder", 1, 128, ""), Case("unet3d", 1, 128, "", frames=4),
                 Case("llama2-7b-prefill", 1, 128, "", layers=2), Case("llama2-7b-decode", 1, 512, "", layers=2)]
    return [Case(c.name, c.batch, c.size, a, c.frames, c.layers) for a in attentions for c in sizes
            if c.name in models]


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


def build(case: Case, device: str, dtype):
    """(module, inputs, kwargs, a call of it, a setup to run before each lowering) for one case."""
    import torch

    if case.name.startswith("llama"):
        return _llama(case, device, dtype)
    from diffusers import AutoencoderKL, UNet2DConditionModel, UNet3DConditionModel
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    from workloads.modules import VaeDecode

    processor = AttnProcessor2_0() if case.attention == "flash" else AttnProcessor()
    latent = case.size // 8
    with torch.device(device):
        if case.name == "sd-unet":
            model = UNet2DConditionModel(**SD_UNET).to(dtype).eval()
            inputs = (torch.randn(case.batch, 4, latent, latent, dtype=dtype), torch.tensor([500] * case.batch),
                      torch.randn(case.batch, 77, 768, dtype=dtype))
        elif case.name == "unet3d":
            model = UNet3DConditionModel(**UNET3D).to(dtype).eval()
            inputs = (torch.randn(case.batch, 4, case.frames, latent, latent, dtype=dtype),
                      torch.tensor([500] * case.batch), torch.randn(case.batch, 77, 1024, dtype=dtype))
        else:
            vae = AutoencoderKL(**SD_VAE).to(dtype).eval()
            vae.set_attn_processor(processor)
            model = VaeDecode(vae)
            inputs = (torch.randn(case.batch, 4, latent, latent, dtype=dtype),)
        if case.name != "sd-vae-decoder":
            model.set_attn_processor(processor)
    return model, inputs, {}, lambda: model(*inputs), None


def _llama(case: Case, device: str, dtype):
    import torch
    from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**{**LLAMA2_7B, "num_hidden_layers": case.layers or LLAMA2_7B["num_hidden_layers"]})
    config._attn_implementation = "sdpa" if case.attention == "flash" else "eager"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build the weights in the working precision directly (13.5 GB, not 27)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config).eval()
    finally:
        torch.set_default_dtype(previous)
    ids = torch.randint(0, 32000, (case.batch, case.size), device=device)
    if case.name == "llama2-7b-prefill":
        kwargs = {"logits_to_keep": 1, "use_cache": False}
        return model, (ids,), kwargs, lambda: model(ids, **kwargs), None
    # Decode one token against a cache of size - 1 positions; the cache is cut back after each step.
    cache = DynamicCache(config=config)
    with torch.no_grad():
        model(ids[:, : case.size - 1], past_key_values=cache, use_cache=True)
    token = ids[:, -1:]
    kwargs = {"past_key_values": cache, "use_cache": True, "logits_to_keep": 1}

    def step():
        out = model(token, **kwargs)
        cache.crop(-1)  # drop the token just added
        return out

    return model, (token,), kwargs, step, lambda: cache.crop(-1)  # the lowering ran one step too


def page_faults(fn) -> int:
    """Minor page faults of one call: fresh memory the allocator got from the OS and the OS zeroed.

    With glibc's default state a model call can fault in gigabytes (the SD UNet at 256x256: 306k
    faults, 1.25 GB a call, from oneDNN's weight reorders); with freed memory kept, the state CPU
    profiles are measured in (calibration/allocator.py), a model in steady state takes next to none.
    A row with many says the timing paid for fresh memory the profile's kernels did not.
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def predict(module, inputs, kwargs, cost, reset):
    from emulator.cost.timeline import GraphCoster
    from workloads.frontend import lower_module

    graph = lower_module(module, *inputs, **kwargs)
    if reset:
        reset()
    return GraphCoster(graph, cost, cost.device.synchronous).call(), graph


def shares(seconds: dict[str, float]) -> dict[str, float]:
    total = sum(seconds.values()) or 1.0
    return {c: seconds.get(c, 0.0) / total for c in CATEGORIES}


FIELDS = ["case", "model", "batch", "size", "frames", "layers", "attention", "measured_s", "predicted_s", "error",
          "max_share_diff_points", "graph_ops", "fallback_ops", "normalized", "failure", "isolated_s",
          "untimed_ops", "measured_rounds_s", "page_faults_per_call", "allocator", "measured_raw_s"] + \
         [f"share_measured_{c}" for c in CATEGORIES] + [f"share_predicted_{c}" for c in CATEGORIES]


def validate(device: str, profile: str, out: Path, models: tuple[str, ...] = MODELS,
             isolated: bool = False, rounds: int = 1, allocator: str | None = None,
             attentions: tuple[str, ...] = ("flash", "baseline")) -> list[dict]:
    """Every case, `rounds` times round-robin; each row keeps the median over rounds of the timed seconds.

    On a CPU the models run in the allocator state the profile's kernels were measured in (its
    `host.allocator`, calibration/allocator.py) unless `allocator` names another.

    A shared machine's speed wanders over minutes in ways its sentinels follow only on average, and
    the profile's times are medians over passes spread over a whole calibration run: rounds spread a
    case's timing over the run in the same way. The CSV is rewritten after every round.
    """
    cases = default_cases(device, models, attentions)
    state = None
    if device == "cpu":
        from calibration.allocator import DEFAULT
        from calibration.allocator import apply as apply_allocator
        from emulator.cost import cost_model

        recorded = getattr(cost_model(profile), "data", {}).get("host", {}).get("allocator", DEFAULT)
        state = apply_allocator(allocator or recorded)
        print(f"allocator: {state} (the profile's: {recorded})", file=sys.stderr)
    rows: list[dict] = []
    for r in range(rounds):
        for i, case in enumerate(cases):
            if r == 0:
                row = validate_case(case, device, profile, isolated)
                row["allocator"] = state or ""
                rows.append(row)
            elif rows[i].get("failure"):
                continue
            else:  # the prediction and the shares do not change between rounds, the timings do
                row = validate_case(case, device, profile, isolated, first=rows[i])
                if row.get("failure"):
                    print(f"round {r + 1}/{rounds} " + line(row), file=sys.stderr, flush=True)
                    continue
                for key in ("measured_s", "measured_raw_s"):
                    if row.get(key):
                        rows[i].setdefault(f"{key}_rounds", [rows[i][key]]).append(row[key])
                        rows[i][key] = statistics.median(rows[i][f"{key}_rounds"])
                rows[i]["error"] = (rows[i]["predicted_s"] - rows[i]["measured_s"]) / rows[i]["measured_s"]
                row = {**rows[i], **row, "error": rows[i]["predicted_s"] / row["measured_s"] - 1}
            print((f"round {r + 1}/{rounds} " if rounds > 1 else "") + line(row), file=sys.stderr, flush=True)
        write_rows(out, rows)
    print(table(rows))
    return rows


def write_rows(out: Path, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            rounds = row.get("measured_s_rounds")
            writer.writerow({**row, "measured_rounds_s": " ".join(f"{t:.4f}" for t in rounds) if rounds else ""})


def sentinel_level(sentinels: list | None, cost):
    """The sentinels' reader (calibration/sentinels.py), or None where there are none (a GPU, no profile)."""
    if not sentinels:
        return None
    from calibration.sentinels import SentinelLevel

    return SentinelLevel(sentinels, cost.dtype, cost.device)


def timed(fn, device: str, level) -> dict:
    """measured_s (at the profile's speed where a sentinel level reads it), measured_raw_s, how."""
    if device != "cpu" or level is None:
        return {"measured_s": time_call(fn, device)}
    from calibration.sentinels import describe, time_at_profile_speed

    timing = time_at_profile_speed(fn, level)
    return {"measured_s": timing.normalized_s, "measured_raw_s": timing.raw_s,
            "normalized": describe(level.sentinels, timing)}


def validate_case(case: Case, device: str, profile: str, isolated: bool, first: dict | None = None) -> dict:
    """One case's row: measured and predicted seconds, category shares (a failure is recorded, not raised).

    Given the case's row from a first round, it only builds the model and times it again (measured_s,
    measured_raw_s), against the first round's sentinels.
    """
    import torch

    from calibration.categories import measured_categories
    from emulator.cost import cost_model

    dtype = torch.float16 if device == "cuda" else torch.float32
    row = {"case": case.label, "model": case.name, "batch": case.batch, "size": case.size,
           "frames": case.frames or "", "layers": case.layers or "", "attention": case.attention}
    fn = None
    try:
        with torch.no_grad():
            module, inputs, kwargs, fn, reset = build(case, device, dtype)
            cost = cost_model(profile, case.attention)
            if first is not None:
                return {**row, **timed(fn, device, sentinel_level(first.get("sentinels"), cost))}
            predicted, graph = predict(module, inputs, kwargs, cost, reset)
            if device == "cpu" and getattr(cost, "data", None):
                from calibration.sentinels import choose

                row["sentinels"] = choose(graph, cost)
            level = sentinel_level(row.get("sentinels"), cost)
            row.update(timed(fn, device, level))
            measured = row["measured_s"]
            categories = measured_categories(fn, device)
            if device == "cpu":
                row["page_faults_per_call"] = page_faults(fn)
            if isolated:  # the same kernels alone, now: composition apart from the profile's error
                from calibration.isolated import isolated_seconds

                alone = isolated_seconds(graph, case.attention, "fp16" if device == "cuda" else "fp32",
                                         device, cost.device.l2_MB * 1e6, level)
                row["untimed_ops"] = int(alone.pop("untimed"))
                row["isolated_s"] = sum(alone.values())
        m, p = shares(categories), shares(predicted.by_category_s)
        row.update(predicted_s=predicted.seconds,
                   error=(predicted.seconds - measured) / measured,
                   max_share_diff_points=100 * max(abs(m[c] - p[c]) for c in CATEGORIES),
                   graph_ops=len(graph.ops), fallback_ops=predicted.fallback_ops,
                   **{f"share_measured_{c}": m[c] for c in CATEGORIES},
                   **{f"share_predicted_{c}": p[c] for c in CATEGORIES})
    except Exception as e:  # noqa: BLE001 (one failing case must not lose the others)
        row["failure"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    finally:
        fn = None
        if device == "cuda":
            torch.cuda.empty_cache()
    return row


def line(row: dict) -> str:
    if row.get("failure"):
        return f"{row['case']:28s} {row['attention']:8s} failed: {row['failure']}"
    text = (f"{row['case']:28s} {row['attention']:8s} {row['measured_s']:10.4f} {row['predicted_s']:10.4f} "
            f"{100 * row['error']:+7.1f}% {row['max_share_diff_points']:6.1f}")
    if row.get("isolated_s"):
        text += f" {row['isolated_s']:10.4f} {100 * (row['measured_s'] / row['isolated_s'] - 1):+7.1f}%"
    return text


def table(rows: list[dict]) -> str:
    head = f"{'case':28s} {'attention':8s} {'measured s':>10s} {'predicted':>10s} {'error':>8s} {'share pts':>6s}"
    if any(r.get("isolated_s") for r in rows):  # --isolated: the kernels alone, and the model against them
        head += f" {'alone s':>10s} {'model/alone':>8s}"
    return "\n".join([head, "-" * len(head)] + [line(r) for r in rows])
