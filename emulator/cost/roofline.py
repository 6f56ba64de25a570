"""Roofline cost model: each kernel takes the longer of its compute time and its memory time.

Matrix products (linear, matmul, conv, attention) run at the device's matrix
peak for the op's dtype, other arithmetic at its fp32 vector peak; memory at
its HBM bandwidth. Every fused attention implementation costs the same here;
baseline attention is its three kernels. Optional efficiencies scale both peaks. This is an upper
bound on speed built from datasheet facts alone; it also serves as the
fallback of calibrated profiles outside their measured domain. Collectives
are no kernels of one GPU: both models cost them from the device's measured
NCCL table where it has one (emulator/cost/collectives.py).
"""

from __future__ import annotations

from emulator.cost.collectives import collective_time
from emulator.cost.kernels import (ATTENTION_IMPLEMENTATIONS, DEFAULT_ATTENTION, attention_of_kind,
                                   baseline_attention_kernels, check_attention, work)
from emulator.devices import Device
from emulator.ops import Op
from emulator.shapes import Attention, Collective


def compute_share(kind: str, shape, dtype: str, device: Device) -> float:
    """The compute part of a kernel's roofline time on a device: 1 compute-bound, 0 memory-bound, between."""
    op = Op("", shape, dtype)
    flops, nbytes = work(op, attention_of_kind(kind))
    compute, memory = flops / device.peak_flops_per_s(op), nbytes / device.bytes_per_s
    return compute / (compute + memory) if compute + memory > 0 else 0.0


class Roofline:
    calibrated = False  # datasheet peaks: no calibrated domain, no op counted as a fallback

    def __init__(self, device: Device, attention: str = DEFAULT_ATTENTION, compute_efficiency: float = 1.0,
                 memory_efficiency: float = 1.0):
        check_attention(attention, ATTENTION_IMPLEMENTATIONS, f"the {device.name} roofline")
        self.device = device
        self.attention = attention
        self.compute_efficiency = compute_efficiency
        self.memory_efficiency = memory_efficiency
        self.host_s_per_op = device.host_us_per_op * 1e-6
        self.host_s_per_kernel = device.host_us_per_kernel * 1e-6
        self.name = f"roofline:{device.name}"

    def kernel_time(self, op: Op) -> float:
        compute = op.flops / (self.device.peak_flops_per_s(op) * self.compute_efficiency)
        memory = op.bytes / (self.device.bytes_per_s * self.memory_efficiency)
        return max(compute, memory)

    def op_time(self, op: Op, attention: str | None = None) -> float:
        """Seconds of the op's kernels; attention as `attention` (default: the model's), every fused
        implementation alike (the datasheet knows no library). A collective: emulator/cost/collectives.py."""
        if isinstance(op.shape, Collective):
            return collective_time(op, self.device)[0]
        if isinstance(op.shape, Attention) and (attention or self.attention) == "baseline":
            return sum(self.kernel_time(k) for k in baseline_attention_kernels(op))
        return self.kernel_time(op)

    def implementation(self, a: Attention) -> str:
        """The name asked for; the default is fused attention, which the datasheet costs as `flash`."""
        return "flash" if self.attention == DEFAULT_ATTENTION else self.attention

    def covers(self, op: Op) -> bool:
        """A roofline has no calibrated domain: it covers no op."""
        return False

    def time_source(self, op: Op) -> str:
        """`datasheet`, but a collective's own source (`measured` where the device's NCCL table has it)."""
        return collective_time(op, self.device)[1] if isinstance(op.shape, Collective) else "datasheet"
