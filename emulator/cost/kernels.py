"""How an op runs as kernels, per attention implementation, and the kernel kind that times it.

Attention implementations are named (ATTENTION_IMPLEMENTATIONS); each is the
kernel kind `attention_<name>` in a profile. Every one but `baseline` is one
fused kernel. Baseline (eager) attention is three: the scaled
score matmul QK^T [B*H, q, d] x [B*H, d, kv], a softmax over the [B*H*q, kv]
similarity matrix, and the value matmul [B*H, q, kv] x [B*H, kv, d]; a causal
mask adds a fourth, an in-place add over the matrix. The similarity matrix makes
round trips through device memory, and masked positions are computed anyway.
"""

from __future__ import annotations

from emulator.errors import UserError
from emulator.ops import Op
from emulator.shapes import Attention, Elementwise, Matmul, Softmax

# name -> what runs. A profile costs the ones it has kernels for; a roofline costs any of them.
ATTENTION_IMPLEMENTATIONS: dict[str, str] = {
    "baseline": "unfused eager PyTorch: score matmul, [causal mask add], softmax, value matmul",
    "flash": "PyTorch scaled_dot_product_attention, flash backend (FlashAttention-2 kernels on CUDA)",
    "fa2": "FlashAttention-2 as serving engines build it (vLLM's vllm_flash_attn)",
    "fa3": "FlashAttention-3 (Hopper)",
    "fa4": "FlashAttention-4 (Blackwell)",
    "flashinfer": "FlashInfer (with TensorRT-LLM's kernels on Blackwell)",
}
DEFAULT_ATTENTION = "default"  # per shape class, the implementation the device's profile names as its default
ATTENTION_KINDS = tuple(f"attention_{name}" for name in ATTENTION_IMPLEMENTATIONS)
# Attention calls of one implementation differ enough by shape class that a profile can default to a
# different library for each (a serving engine's decode kernel is not its prefill kernel).
SHAPE_CLASSES = ("bidirectional", "causal", "decode")


def shape_class(a: Attention) -> str:
    """'decode' (one new query against a KV cache), 'causal' or 'bidirectional'."""
    if a.kv_cache and a.q_len == 1:
        return "decode"
    return "causal" if a.causal else "bidirectional"


def check_attention(name: str, available, where: str) -> None:
    """A one-line UserError unless `name` is 'default' or one of the implementations `where` can cost."""
    if name != DEFAULT_ATTENTION and name not in available:
        listed = ", ".join([DEFAULT_ATTENTION] + [n for n in ATTENTION_IMPLEMENTATIONS if n in available])
        raise UserError(f"attention {name!r} is not costed by {where}; choose from: {listed}")


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
    """Scaled score matmul, [causal mask add], softmax, value matmul."""
    a = op.shape
    bh = a.batch * a.heads
    scores = Op(f"{op.name}.scores", Matmul(bh, a.q_len, a.head_dim, a.kv_len), op.dtype)
    mask = Op(f"{op.name}.mask", Elementwise("add", bh * a.q_len * a.kv_len), op.dtype)
    softmax = Op(f"{op.name}.softmax", Softmax(bh * a.q_len, a.kv_len), op.dtype)
    values = Op(f"{op.name}.values", Matmul(bh, a.q_len, a.kv_len, a.head_dim), op.dtype)
    masked = a.causal and a.q_len > 1  # one query sees every cached key: nothing to mask
    return (scores, mask, softmax, values) if masked else (scores, softmax, values)


def work(op: Op, attention: str) -> tuple[int, int]:
    """(FLOPs, bytes) the op's kernels perform under an attention implementation."""
    if isinstance(op.shape, Attention) and attention == "baseline":
        parts = baseline_attention_kernels(op)
        return sum(k.flops for k in parts), sum(k.bytes for k in parts)
    return op.flops, op.bytes
