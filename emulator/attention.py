"""The attention implementations a user can name, and the shape classes a device's default is chosen by.

Attention is costed as one of several libraries' kernels: the unfused eager
baseline, PyTorch's fused scaled_dot_product_attention (flash backend), or the
FlashAttention / FlashInfer builds serving engines run. A profile holds
kernels for some of them (kind `attention_<name>`) and names a default for
each shape class, since an engine's decode kernel is not its prefill kernel;
a roofline costs every fused one alike. `check_attention` is the one place a
wrong name is refused, listing what the cost model has. Kept free of numpy
and torch so the command line can list the names cheaply.
"""

from __future__ import annotations

from emulator.errors import UserError
from emulator.shapes import Attention

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
