"""What to measure: a grid of shapes per kernel kind, plus the distinct shapes of named workloads.

The grid spans the suite's range on each axis (tokens 1..65k, widths 320..16k,
feature maps 4..256) at about a factor of 2-4 per step; `quick` keeps a corner
subset. Linear shapes come with and without a bias. Attention, under both
implementations, covers three shape classes: bidirectional (up to 4096 tokens
densely, then long self-attention to 128k tokens at head_dim 64 and 128),
causal prefill (64 to 32k tokens) and decode against a KV cache (batch x heads
1 to 16k, KV 128 to 32k); no attention shape exceeds ATTENTION_MAX_FLOPS, and
baseline attention only where its similarity matrices fit an 80 GB GPU.
Workload shapes are taken from every stage graph at the workload's default
knobs, for decode stages at their first, middle and last calls, with attention
under both implementations.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from itertools import product

from emulator.cost.kernels import kernel_kind
from emulator.shapes import Attention, Conv, Elementwise, Embedding, Linear, Matmul, Norm, Resample, Softmax

Spec = tuple  # (kind, shape)

# Self-attention lengths past the 4096-token grid: video diffusion transformers attend over 24k-75k tokens.
LONG_TOKENS = (8192, 16384, 32768, 65536, 131072)
# No attention shape above 1e14 FLOPs: 0.25 s a run at 400 TFLOP/s, within a GPU's per-run limit.
ATTENTION_MAX_FLOPS = 1e14
# Baseline attention holds two [B*H, q, kv] similarity matrices (scores, probabilities): at most 12 Gi
# elements, 48 GiB in fp16, which an 80 GB GPU holds beside the inputs (calibration/gpu.py's set limit).
BASELINE_MAX_SIMILARITY_ELEMENTS = 12 << 30
# A decode shape's K and V (2 x B*H x kv x d elements) at most 2 Gi elements, 4 GiB in fp16: one layer's
# cache at the batch x context an 80 GB GPU serves.
DECODE_MAX_KV_ELEMENTS = 2 << 30


def spec_key(kind: str, shape) -> str:
    return f"{kind}:{json.dumps(asdict(shape), sort_keys=True)}"


def grid(quick: bool = False) -> list[Spec]:
    """Every kind's grid, products first, then convolutions, attention and the memory-bound kinds."""
    return (_products(quick) + _convolutions(quick) + _attention(quick) + _memory_bound(quick))


def _products(q: bool) -> list[Spec]:
    out: list[Spec] = []
    # Every linear shape with and without a bias: a bias is another kernel (a fused epilogue, or a GEMM
    # plus an add), so the two are measured at the same shapes.
    for m, k, n in product((1, 16, 256, 4096) if q else (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536),
                           (768, 4096) if q else (320, 768, 1280, 4096, 11008),
                           (1280, 4096) if q else (320, 1280, 4096, 16384)):
        out.append(("linear", Linear(m, k, n)))
        if not q or k == 4096:
            out.append(("linear", Linear(m, k, n, bias=False)))
    for b, m, k, n in product((16,) if q else (1, 16, 128), (64, 4096) if q else (64, 512, 4096),
                              (64,) if q else (64, 512), (64, 4096) if q else (64, 512, 4096)):
        out.append(("matmul", Matmul(b, m, k, n)))
    return out


def _convolutions(q: bool) -> list[Spec]:
    out: list[Spec] = []
    for c, side, batch in product((320, 1280) if q else (128, 320, 640, 1280),
                                  (16, 64) if q else (4, 8, 16, 32, 64, 128, 256), (1,) if q else (1, 4)):
        out.append(("conv2d", Conv(batch, c, c, (side, side), (3, 3))))
    if not q:
        out += _unet_convs()
    # Temporal convs: batch = video batch x latent pixels, from a few (reduced sizes, deep blocks) to 65k.
    for batch, c, frames in product((4096,) if q else (4, 16, 64, 256, 4096, 65536),
                                    (320,) if q else (320, 640, 1280), (16,) if q else (4, 8, 16, 76)):
        out.append(("conv1d", Conv(batch, c, c, (frames,), (3,))))
    # The same temporal conv as diffusers' video UNets run it: a conv3d with a (3, 1, 1) kernel over
    # [B, C, F, H, W], which PyTorch times differently from the conv1d above. A UNet's levels: 320
    # channels at the latent side, 640 at half, 1280 below.
    for latent, (c, div), frames, batch in product((16,) if q else (16, 32, 64), ((320, 1), (640, 2), (1280, 4),
                                                    (1280, 8)), (8,) if q else (4, 8, 16), (1,) if q else (1, 2)):
        if batch == 1 or frames == 8:
            out.append(("conv3d", Conv(batch, c, c, (frames, latent // div, latent // div), (3, 1, 1))))
    return out


def _unet_convs() -> list[Spec]:
    """UNet convs unlike a square 3x3: skip-connection inputs, per-frame batches, 1x1 and stride 2."""
    out: list[Spec] = []
    # Decoder convs take the skip connection's channels too (c_in = 1.5-3x c_out), and video UNets run
    # their 2-D convs on every frame (batch = frames) at small sides.
    for c, ratio, side, batch in product((320, 1280), (1, 2, 3), (2, 4, 8, 16), (1, 4)):
        out.append(("conv2d", Conv(batch, ratio * c, c, (side, side), (3, 3))))
    for c, side in product((320, 1280), (16, 64)):
        out += [("conv2d", Conv(2, c, c, (side, side), (1, 1))),
                ("conv2d", Conv(2, c, c, (2 * side, 2 * side), (3, 3), stride=2)),
                ("conv2d", Conv(2, 2 * c, c, (side, side), (3, 3)))]
    # 1x1 convs (shortcuts and attention projections, c_in = 1-3x c_out) and stride-2 downsamplers at a
    # UNet's levels: 320 channels at the largest sides, 1280 at the smallest.
    for (c, sides), batch in product(((320, (16, 32, 64)), (640, (8, 16, 32)), (1280, (4, 8, 16))), (1, 2)):
        for side in sides:
            out += [("conv2d", Conv(batch, ratio * c, c, (side, side), (1, 1))) for ratio in (1, 2, 3)]
            out.append(("conv2d", Conv(batch, c, c, (2 * side, 2 * side), (3, 3), stride=2)))
    return out


def _attention(q: bool) -> list[Spec]:
    """Both implementations at every attention shape they can run: bidirectional, causal prefill, decode."""
    shapes = _bidirectional(q) + _causal(q) + _decode(q)
    return [(impl, s) for impl in ("attention_flash", "attention_baseline") for s in shapes
            if s.flops <= ATTENTION_MAX_FLOPS
            and (impl != "attention_baseline" or s.similarity_elements <= BASELINE_MAX_SIMILARITY_ELEMENTS)]


def _bidirectional(q: bool) -> list[Attention]:
    """Self and cross attention up to 4096 tokens, temporal attention over frames, and long self-attention
    (video diffusion transformers attend over 24k-75k tokens) up to LONG_TOKENS[-1] at head_dim 64 and 128."""
    short = product((16,) if q else (16, 128), (1, 256, 4096) if q else (1, 16, 64, 256, 1024, 4096),
                    (77, 1024, 4096) if q else (77, 256, 1024, 4096), (64,) if q else (40, 64, 128))
    out = [Attention(1, bh, ql, kv, d, "self") for bh, ql, kv, d in short]
    if not q:
        out += [Attention(1, bh, f, f, 64, "temporal") for bh in (4096, 65536) for f in (8, 16, 76)]
        out += [Attention(1, bh, n, n, d, "self") for n, bh, d in product(LONG_TOKENS, (1, 4, 16, 64), (64, 128))]
    return out


def _causal(q: bool) -> list[Attention]:
    """Causal prefill (q_len == kv_len) of 64 to 32k tokens, batch x heads 1 to 64."""
    tokens, bhs, dims = ((1024,), (16,), (128,)) if q else ((64, 256, 1024, 4096, 16384, 32768), (1, 4, 16, 64),
                                                             (64, 128))
    return [Attention(1, bh, n, n, d, "causal", causal=True) for n, bh, d in product(tokens, bhs, dims)]


def _decode(q: bool) -> list[Attention]:
    """One new query per (sequence, head) against a KV cache, as LLM decode runs it: batch x heads from 1 to
    16k by factors of 2 (per-(sequence, head) work shows past a few dozen), KV 128 to 32k; heads up to 32 and
    the rest batch; K and V of one layer at most DECODE_MAX_KV_ELEMENTS."""
    bhs = (32, 1024) if q else tuple(2**i for i in range(15))
    kvs = (1024,) if q else (128, 512, 2048, 8192, 32768)
    out = []
    for bh, kv in product(bhs, kvs):
        heads = min(bh, 32)
        if 2 * bh * kv * 128 <= DECODE_MAX_KV_ELEMENTS:
            out.append(Attention(bh // heads, heads, 1, kv, 128, "causal", causal=True, kv_cache=True))
    return out


def _memory_bound(q: bool) -> list[Spec]:
    out: list[Spec] = []
    for batch, c, hw in product((2,) if q else (1, 2, 8), (320, 1280) if q else (128, 320, 640, 1280),
                                (1024, 16384) if q else (64, 256, 1024, 4096, 16384)):
        out.append(("group_norm", Norm("group", batch * c * hw, c, 32, batch)))
    for norm, rows, c in product(("layer", "rms"), (1, 1024) if q else (1, 77, 1024, 8192, 65536),
                                 (768, 4096) if q else (320, 768, 1280, 4096)):
        out.append((f"{norm}_norm", Norm(norm, rows * c, c)))
    for rows, cols in product((1024, 65536) if q else (1024, 16384, 262144),
                              (77, 4096) if q else (77, 256, 1024, 4096, 32000)):
        out.append(("softmax", Softmax(rows, cols)))
    ops = ("add", "silu", "copy") if q else ("add", "silu", "copy", "memcpy", "gelu", "geglu")
    for op, n in product(ops, (2**10, 2**18, 2**24) if q else (2**10, 2**13, 2**16, 2**19, 2**22, 2**25)):
        out.append(("elementwise", Elementwise(op, n, 2 if op in ("add", "geglu") else 1)))
    for c, side in product((128, 640), (16, 64) if q else (16, 64, 256)):
        out.append(("resample", Resample("up", 1, c, (side, side))))
    for tokens, dim in product((1, 1024) if q else (1, 77, 1024, 4096), (768, 4096)):
        out.append(("embedding", Embedding(tokens, 32000, dim)))
    return out


def validation_specs(device: str, dtype: str) -> list[Spec]:
    """Distinct (kind, shape) of the real modules `calibration validate` times on this device.

    Lowered without weights: diffusers' models on the meta device, transformers' on fake tensors
    (its mask code reads a value, which meta tensors refuse; diffusers' .to(dtype) cannot swap fake
    parameters). Measuring them makes validation test how kernels compose into a model (the
    lowering, the host, caches between kernels), with interpolation error left to `report`.
    """
    import contextlib

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from calibration.models import build, default_cases
    from workloads.frontend import lower_module

    torch_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[dtype]
    seen: dict[str, Spec] = {}
    for case in default_cases(device):
        fake = case.name.startswith("llama")
        with torch.no_grad(), FakeTensorMode(allow_non_fake_inputs=True) if fake else contextlib.nullcontext():
            module, inputs, kwargs, _, _ = build(case, "cpu" if fake else "meta", torch_dtype)
            graph = lower_module(module, *inputs, **kwargs)
        for op in graph.ops:
            kind = kernel_kind(op, case.attention)
            seen.setdefault(spec_key(kind, op.shape), (kind, op.shape))
    return list(seen.values())


def workload_specs(names: list[str], dtype: str) -> list[Spec]:
    """Distinct (kind, shape) of the named workloads' graphs (attention under both implementations)."""
    import workloads

    seen: dict[str, Spec] = {}
    for name in names:
        pipeline = workloads.build(name, dtype=dtype)
        for stage in pipeline.stages:
            calls = sorted({0, stage.calls // 2, stage.calls - 1}) if stage.kv_growth else [0]
            for call in calls:
                for op in stage.graph(call=call):
                    impls = ("flash", "baseline") if isinstance(op.shape, Attention) else ("flash",)
                    for impl in impls:
                        kind = kernel_kind(op, impl)
                        seen.setdefault(spec_key(kind, op.shape), (kind, op.shape))
    return list(seen.values())
