"""How an op runs as kernels, per attention implementation, and the kernel kind that times it.

Attention implementations are named (emulator/attention.py); each is the
kernel kind `attention_<name>` in a profile. Every one but `baseline` is one
fused kernel. Baseline (eager) attention is three: the scaled
score matmul QK^T [B*H, q, d] x [B*H, d, kv], a softmax over the [B*H*q, kv]
similarity matrix, and the value matmul [B*H, q, kv] x [B*H, kv, d]; a causal
mask adds a fourth, an in-place add over the matrix. The similarity matrix makes
round trips through device memory, and masked positions are computed anyway.
Grouped-query attention (kv_heads < heads) in eager Hugging Face LLaMA first
broadcasts each K/V head over its group of query heads with `repeat_kv`
(expand + reshape of [B, Hkv, kv, d] to [B, H, kv, d], which materializes a
copy): two more kernels, copies of K and of V, before the score matmul.
Fused kernels read each K/V head once for its group (FlashAttention's GQA).
"""

from __future__ import annotations

__all__ = ["ATTENTION_IMPLEMENTATIONS", "ATTENTION_KINDS", "DEFAULT_ATTENTION", "SHAPE_CLASSES", "attention_of_kind",
           "baseline_attention_kernels", "check_attention", "kernel_count", "kernel_kind", "shape_class", "work"]

from emulator.attention import ATTENTION_IMPLEMENTATIONS, ATTENTION_KINDS, DEFAULT_ATTENTION, SHAPE_CLASSES
from emulator.attention import check_attention, shape_class
from emulator.ops import Op
from emulator.shapes import Attention, Elementwise, Matmul, Softmax

def attention_of_kind(kind: str) -> str:
    """The attention implementation a kernel kind times ('flash' for kinds that are not attention)."""
    return kind.removeprefix("attention_") if kind.startswith("attention_") else "flash"


def kernel_kind(op: Op, attention: str) -> str:
    """The calibration kind that times this op: the shape's kind, attention split by (resolved) implementation."""
    if isinstance(op.shape, Attention):
        return f"attention_{attention}"
    return op.shape.kind


def kernel_count(op: Op, attention: str) -> int:
    """Kernel launches the op costs the host."""
    if isinstance(op.shape, Attention) and attention == "baseline":
        return len(baseline_attention_kernels(op))
    return 1


def baseline_attention_kernels(op: Op) -> tuple[Op, ...]:
    """[K and V repeated over query groups], scaled score matmul, [causal mask add], softmax, value matmul."""
    a = op.shape
    bh = a.batch * a.heads
    scores = Op(f"{op.name}.scores", Matmul(bh, a.q_len, a.head_dim, a.kv_len), op.dtype)
    mask = Op(f"{op.name}.mask", Elementwise("add", bh * a.q_len * a.kv_len), op.dtype)
    softmax = Op(f"{op.name}.softmax", Softmax(bh * a.q_len, a.kv_len), op.dtype)
    values = Op(f"{op.name}.values", Matmul(bh, a.q_len, a.kv_len, a.head_dim), op.dtype)
    masked = a.causal and a.q_len > 1  # one query sees every cached key: nothing to mask
    core = (scores, mask, softmax, values) if masked else (scores, softmax, values)
    if a.group == 1:
        return core
    # repeat_kv: k, v[B, Hkv, kv, d] -> [B, H, kv, d], one copy each (a layout change: strided reads)
    repeats = tuple(Op(f"{op.name}.repeat_{t}", Elementwise("copy", bh * a.kv_len * a.head_dim), op.dtype)
                    for t in ("k", "v"))
    return repeats + core


def work(op: Op, attention: str) -> tuple[int, int]:
    """(FLOPs, bytes) the op's kernels perform under an attention implementation."""
    if isinstance(op.shape, Attention) and attention == "baseline":
        parts = baseline_attention_kernels(op)
        return sum(k.flops for k in parts), sum(k.bytes for k in parts)
    return op.flops, op.bytes
