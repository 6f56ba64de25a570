"""Measured time per operator category of one real model call, with the PyTorch profiler.

The profiler records every aten op the call dispatches; the top-level ones
(those not called from inside another aten op) partition the call. Each is put
in the category the frontend (`workloads.frontend`) gives the same aten op, so
measured and predicted shares compare like with like: convolutions, linear
layers and batched matrix products (the unfused attention's too), fused
attention, group and layer norms, softmax ("Other"), resampling, embedding, and
the pointwise rest. On a GPU an op's time is its kernels' device time; on a
CPU its own wall time.
"""

from __future__ import annotations

CATEGORY_BY_ATEN = {
    "convolution": "Convolution", "conv1d": "Convolution", "conv2d": "Convolution", "conv3d": "Convolution",
    "_convolution": "Convolution", "linear": "Linear", "addmm": "Linear", "mm": "Linear", "bmm": "Linear",
    "baddbmm": "Linear", "matmul": "Linear", "scaled_dot_product_attention": "Attention",
    "_scaled_dot_product_flash_attention": "Attention", "_scaled_dot_product_efficient_attention": "Attention",
    "_scaled_dot_product_flash_attention_for_cpu": "Attention", "group_norm": "GroupNorm",
    "native_group_norm": "GroupNorm", "layer_norm": "LayerNorm", "native_layer_norm": "LayerNorm",
    "rms_norm": "LayerNorm", "softmax": "Other", "_softmax": "Other", "embedding": "Embedding",
    "upsample_nearest2d": "Resample", "upsample_nearest3d": "Resample", "avg_pool2d": "Resample",
}
IGNORED = {"empty", "empty_strided", "zeros", "ones", "arange", "full", "view", "reshape", "permute", "transpose",
           "t", "expand", "unsqueeze", "squeeze", "slice", "select", "split", "chunk", "as_strided", "detach",
           "alias", "lift_fresh", "_unsafe_view", "unflatten", "flatten", "dropout", "item", "_local_scalar_dense"}


def category_of(aten_name: str) -> str | None:
    """The category of an aten op by its name (`aten::conv2d`), None for ops that do no work."""
    name = aten_name.removeprefix("aten::").rstrip("_")
    if name in IGNORED:
        return None
    return CATEGORY_BY_ATEN.get(name, "Elementwise")


def measured_categories(fn, device: str) -> dict[str, float]:
    """Seconds per category of one call of fn (after it has been warmed up)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
    seconds: dict[str, float] = {}
    for e in prof.events():
        if not e.name.startswith("aten::"):
            continue
        parent = e.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is not None:
            continue  # inside another aten op: its time is in the parent's
        category = category_of(e.name)
        if category is None:
            continue
        us = e.device_time_total if device == "cuda" else e.cpu_time_total
        seconds[category] = seconds.get(category, 0.0) + us * 1e-6
    return seconds
