"""Torch implementations of each kernel kind, as eager PyTorch runs them, on rotating input buffers.

`make_runner(kind, shape, dtype, device, buffers)` allocates `buffers` sets of
random inputs for an emulator shape and returns a `Runner` whose `run(i)`
launches the kernel(s) on set i % buffers. Rotating sets larger than the
last-level cache keeps the cache from flattering repeated runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

TORCH_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass
class Runner:
    run: Callable[[int], object]
    backend: str  # what actually ran, e.g. "flash_attn_func", "sdpa:flash", "baddbmm+softmax+bmm"
    sets: list[tuple]  # the rotating input sets


def flash_attn_func():
    """flash-attn's kernel where it imports (CUDA only), else None."""
    try:
        from flash_attn import flash_attn_func as fn  # type: ignore
    except Exception:  # not installed, or built for another torch
        return None
    return fn


def _sets(n: int, make: Callable[[], tuple]) -> list[tuple]:
    return [make() for _ in range(n)]


def make_runner(kind: str, s, dtype: str, device: str, buffers: int) -> Runner:
    dt = TORCH_DTYPES[dtype]

    def rand(*shape):  # uniform in [-1, 1): random, never zeros, and fast to fill
        return torch.empty(*shape, device=device, dtype=dt).uniform_(-1.0, 1.0)

    if kind == "linear":
        sets = _sets(buffers, lambda: (rand(s.m, s.k), rand(s.n, s.k), rand(s.n) if s.bias else None))
        return _runner(sets, lambda x, w, b: F.linear(x, w, b), "F.linear")
    if kind == "matmul":
        sets = _sets(buffers, lambda: (rand(s.batch, s.m, s.k), rand(s.batch, s.k, s.n)))
        return _runner(sets, torch.bmm, "torch.bmm")
    if kind in ("conv1d", "conv2d", "conv3d"):
        conv = {"conv1d": F.conv1d, "conv2d": F.conv2d, "conv3d": F.conv3d}[kind]
        pad = tuple(k // 2 for k in s.kernel)
        sets = _sets(buffers, lambda: (rand(s.batch, s.c_in, *s.size),
                                       rand(s.c_out, s.c_in // s.groups, *s.kernel),
                                       rand(s.c_out) if s.bias else None))
        return _runner(sets, lambda x, w, b: conv(x, w, b, s.stride, pad, 1, s.groups), f"F.{kind}")
    if kind == "attention_flash":
        return _flash_attention(s, rand, buffers)
    if kind == "attention_baseline":
        return _baseline_attention(s, rand, buffers)
    if kind == "group_norm":
        sets = _sets(buffers, lambda: (rand(s.batch, s.channels, s.elements // (s.batch * s.channels)),
                                       rand(s.channels), rand(s.channels)))
        return _runner(sets, lambda x, w, b: F.group_norm(x, s.groups, w, b), "F.group_norm")
    if kind in ("layer_norm", "rms_norm"):
        rows = s.elements // s.channels
        sets = _sets(buffers, lambda: (rand(rows, s.channels), rand(s.channels), rand(s.channels)))
        if kind == "layer_norm":
            return _runner(sets, lambda x, w, b: F.layer_norm(x, (s.channels,), w, b), "F.layer_norm")
        return _runner(sets, lambda x, w, b: F.rms_norm(x, (s.channels,), w), "F.rms_norm")
    if kind == "softmax":
        sets = _sets(buffers, lambda: (rand(s.rows, s.cols),))
        return _runner(sets, lambda x: torch.softmax(x, -1), "torch.softmax")
    if kind == "elementwise":
        fn, backend = ELEMENTWISE[s.op]
        # Operands beyond `inputs` are broadcast (a bias, a time embedding): one element each. A copy
        # of several inputs (a torch.cat of strided tensors) moves them as one tensor of `elements`.
        inputs = 1 if s.op in ("copy", "memcpy") else s.inputs
        extra = ARITY.get(s.op, 1) - inputs
        sets = _sets(buffers, lambda: tuple(rand(s.elements) for _ in range(inputs))
                     + tuple(rand(1) for _ in range(extra)))
        return _runner(sets, fn, backend)
    if kind == "resample":
        sets = _sets(buffers, lambda: (rand(s.batch, s.channels, *s.size),))
        if s.direction == "up":
            return _runner(sets, lambda x: F.interpolate(x, scale_factor=s.factor, mode="nearest"),
                           "F.interpolate(nearest)")
        pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(s.size)]
        return _runner(sets, lambda x: pool(x, s.factor), "avg_pool")
    if kind == "embedding":
        sets = _sets(buffers, lambda: (torch.randint(0, s.vocab, (s.tokens,), device=device),
                                       rand(s.vocab, s.dim)))
        return _runner(sets, F.embedding, "F.embedding")
    raise ValueError(f"no torch implementation for kernel kind {kind!r}")


def _runner(sets: list[tuple], fn: Callable, backend: str) -> Runner:
    return Runner(lambda i: fn(*sets[i % len(sets)]), backend, sets)


def _copy(x):
    # A layout change: x viewed as [a, b] and made contiguous as [b, a], a the divisor nearest sqrt(n).
    n = x.numel()
    a = next(d for d in range(math.isqrt(n), 0, -1) if n % d == 0)
    return x.clone() if a == 1 else x.view(a, n // a).t().contiguous()


# Each elementwise op as eager PyTorch code writes it; fused where one torch call does it.
ELEMENTWISE: dict[str, tuple[Callable, str]] = {
    "add": (torch.add, "torch.add"),
    "mul": (torch.mul, "torch.mul"),
    "scale": (lambda x: x * 0.5, "mul scalar"),
    "silu": (F.silu, "F.silu"),
    "quick_gelu": (lambda x: x * torch.sigmoid(1.702 * x), "x*sigmoid(1.702x)"),
    "gelu": (lambda x: F.gelu(x, approximate="tanh"), "F.gelu(tanh)"),
    "geglu": (lambda x, g: x * F.gelu(g), "x*F.gelu(g)"),
    "swiglu": (lambda g, u: F.silu(g) * u, "F.silu(g)*u"),
    "rope": (lambda x: x * 0.5 + torch.roll(x, 1, -1) * 0.25, "x*cos+rot(x)*sin"),
    "copy": (_copy, "contiguous() of a transpose"),
    "memcpy": (lambda x: torch.cat(x.chunk(2)), "torch.cat of two halves"),
    "timestep": (torch.sin, "torch.sin"),
    "unary": (torch.rsqrt, "torch.rsqrt"),  # the lowering's one-op-per-element kind (exp, rsqrt, pow, ...)
    "sigmoid": (torch.sigmoid, "torch.sigmoid"),
    "reduce": (lambda x: x.mean(-1, keepdim=True), "mean over the last dim"),
}


ARITY = {"add": 2, "mul": 2, "geglu": 2, "swiglu": 2}


def _flash_attention(s, rand, buffers: int) -> Runner:
    causal = s.causal and s.q_len > 1
    if causal and s.q_len != s.kv_len:
        raise ValueError("causal attention is timed only for q_len == kv_len or q_len == 1")
    fa = flash_attn_func()
    on_cuda = rand(1).is_cuda
    if fa is not None and on_cuda and s.head_dim <= 256:
        # flash-attn layout: [B, L, H, d]
        sets = _sets(buffers, lambda: (rand(s.batch, s.q_len, s.heads, s.head_dim),
                                       rand(s.batch, s.kv_len, s.heads, s.head_dim),
                                       rand(s.batch, s.kv_len, s.heads, s.head_dim)))
        return _runner(sets, lambda q, k, v: fa(q, k, v, causal=causal), "flash_attn_func")
    from torch.nn.attention import SDPBackend, sdpa_kernel

    sets = _sets(buffers, lambda: (rand(s.batch, s.heads, s.q_len, s.head_dim),
                                   rand(s.batch, s.heads, s.kv_len, s.head_dim),
                                   rand(s.batch, s.heads, s.kv_len, s.head_dim)))
    q, k, v = sets[0]
    try:  # the flash backend refuses some shapes (e.g. head_dim > 256): use what SDPA would pick
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        backends, backend = [SDPBackend.FLASH_ATTENTION], "sdpa:flash"
    except RuntimeError:
        backends, backend = None, "sdpa:default"

    def run(q, k, v):
        if backends is None:
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        with sdpa_kernel(backends):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal)

    return _runner(sets, run, backend)


def _baseline_attention(s, rand, buffers: int) -> Runner:
    """Scores (scaled, one kernel), [causal mask add], softmax, values: the matrix lives in memory."""
    bh = s.batch * s.heads
    scale = 1.0 / math.sqrt(s.head_dim)
    masked = s.causal and s.q_len > 1
    sets = _sets(buffers, lambda: (rand(bh, s.q_len, s.head_dim), rand(bh, s.head_dim, s.kv_len),
                                   rand(bh, s.kv_len, s.head_dim)))
    q0 = sets[0][0]
    ignored = torch.zeros(1, 1, 1, device=q0.device, dtype=q0.dtype)  # baddbmm's input, scaled by beta=0
    mask = None
    if masked:
        mask = torch.full((s.q_len, s.kv_len), float("-inf"), device=q0.device, dtype=q0.dtype).triu(
            1 + s.kv_len - s.q_len)

    def run(q, kt, v):
        scores = torch.baddbmm(ignored, q, kt, beta=0.0, alpha=scale)
        if mask is not None:
            scores.add_(mask)
        return torch.bmm(torch.softmax(scores, -1), v)

    return _runner(sets, run, "baddbmm+softmax+bmm" + ("+mask" if masked else ""))
