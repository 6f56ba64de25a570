"""What a calibration run will measure: the kernels, their buffers, and what is skipped and why.

A spec is (kind, shape). A kernel is skipped when one input set with its
weights and outputs would not fit the device's limit, or when a pessimistic
estimate of one run (the datasheet roofline at half efficiency plus a launch)
exceeds the limit per run; the profile lists what was skipped. Each measured
kernel rotates over enough input sets to overflow the last-level cache twice,
so repeated runs do not find their inputs in cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from emulator.cost.kernels import attention_of_kind, work
from emulator.devices import Device
from emulator.ops import Op


@dataclass(frozen=True)
class Kernel:
    kind: str
    shape: object
    estimate_s: float  # one run, pessimistic


def footprint_bytes(kind: str, shape, dtype: str) -> int:
    """Memory one input set, its weights and outputs take (baseline attention: two similarity matrices)."""
    op = Op("", shape, dtype)
    elements = shape.input_elements + shape.weight_elements + shape.output_elements
    return elements * op.dtype_bytes + (2 * op.similarity_bytes if kind == "attention_baseline" else 0)


def buffer_sets(set_bytes: int, cache_bytes: float) -> int:
    """Enough rotating input sets to overflow the last-level cache twice (1 to 8)."""
    return max(1, min(8, math.ceil(2 * cache_bytes / max(set_bytes, 1))))


def estimate_kernel_s(kind: str, shape, dtype: str, device: Device) -> float:
    """A pessimistic guess of one run: the roofline at half efficiency plus a launch."""
    op = Op("", shape, dtype)
    flops, nbytes = work(op, attention_of_kind(kind))
    return 2 * max(flops / device.peak_flops_per_s(op), nbytes / device.bytes_per_s) + 10e-6


def plan(specs, dtype: str, limits, device: Device) -> tuple[list[Kernel], list[dict]]:
    """(kernels to measure, skipped as {kind, shape, reason}) for (kind, shape) specs."""
    from emulator.cost.profile import shape_to_json

    todo, skipped = [], []
    for kind, shape in specs:
        need = footprint_bytes(kind, shape, dtype)
        est = estimate_kernel_s(kind, shape, dtype, device)
        if need > limits.max_set_bytes:
            skipped.append({"kind": kind, "shape": shape_to_json(shape), "reason": f"needs {need / 2**30:.1f} GiB"})
        elif est > limits.max_kernel_s:
            skipped.append({"kind": kind, "shape": shape_to_json(shape),
                            "reason": f"estimated {est:.2f} s per run"})
        else:
            todo.append(Kernel(kind, shape, est))
    return todo, skipped


def estimated_seconds(kernels, dtype: str, limits, cache_bytes: float) -> float:
    """Wall time to time these kernels: their timing budget, a set-up, and filling their buffers."""
    total = 0.0
    for k in kernels:
        nbytes = footprint_bytes(k.kind, k.shape, dtype)
        total += (min(20 * k.estimate_s, limits.budget_s) + 0.005
                  + nbytes * buffer_sets(nbytes, cache_bytes) / limits.fill_bytes_per_s)
    return total
