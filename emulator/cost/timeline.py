"""Time of one stage call: device kernels in order, fed by a host that dispatches them.

Eager PyTorch dispatches kernels from one host thread without waiting for the
device, h seconds per op of the graph (the model code's whole host cost per
op, calibrated on real models) plus the bare dispatch time for each further
kernel an op launches (baseline attention). Op j cannot start before the host
has dispatched it (at H_j, the sum of host times up to and including j) nor
before op j-1 ends. The call ends when the last op does:

    D_j = max(D_{j-1}, H_j) + d_j   =>   D_n = max_j (H_j + d_j + ... + d_n)

so a step's time is set by whichever side is the bottleneck, and where. At
small batch the device idles waiting for the host (`host_idle_s`). On a CPU the
same thread runs the kernels: the call takes the sum of kernel times plus
dispatch, with no overlap. That is the `eager` runtime; the runtime (a costing
input, `emulator.cost.runtime`) sets H_j, e.g. `cuda-graphs` issues every
kernel with one launch per call.

A decode step differs from the graph's first call only in the ops that read
the growing KV caches; `GraphCoster` re-costs just those (`grown`), and is the
one place that does, for `stage_time` and the engine alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from emulator.cost.kernels import kernel_count
from emulator.cost.model import TIME_SOURCES, CostModel
from emulator.cost.runtime import EAGER, Runtime
from emulator.graph import OpGraph
from emulator.ops import CATEGORIES, Op


@dataclass(frozen=True)
class CallTime:
    seconds: float  # wall time of the call
    device_s: float  # sum of kernel times
    by_category_s: dict[str, float] = field(default_factory=dict)  # kernel time per category
    fallback_ops: int = 0  # ops costed by the roofline fallback
    by_source_s: dict[str, float] = field(default_factory=dict)  # kernel time per TIME_SOURCES entry

    @property
    def host_idle_s(self) -> float:
        """Time the device waits for the host to dispatch kernels."""
        return max(self.seconds - self.device_s, 0.0)


def finish_time(kernel_s: np.ndarray, dispatched_s: np.ndarray, synchronous: bool) -> float:
    """End of the last kernel; dispatched_s[j] is when the host has issued kernel j."""
    if synchronous:
        return float(kernel_s.sum() + dispatched_s[-1]) if len(kernel_s) else 0.0
    suffix = np.cumsum(kernel_s[::-1])[::-1]  # d_j + ... + d_n
    return float(np.max(dispatched_s + suffix)) if len(kernel_s) else 0.0


class GraphCoster:
    """Costs the calls of one graph (and of its later decode steps) under a cost model and a runtime."""

    def __init__(self, graph: OpGraph, model: CostModel, synchronous: bool, runtime: Runtime = EAGER):
        self.graph, self.model, self.synchronous, self.runtime = graph, model, synchronous, runtime
        self.counts_fallbacks = model.calibrated  # a roofline has no domain to fall out of
        extra_kernels = np.array([kernel_count(op, model.attention) - 1 for op in graph.ops], dtype=float)
        self.dispatched = runtime.dispatched(model, extra_kernels)  # [ops]
        self.kernel_s = np.array([model.op_time(op) for op in graph.ops])
        index = {c: i for i, c in enumerate(CATEGORIES)}
        self.category = np.array([index[op.category] for op in graph.ops])
        self.fallback = np.array([self.is_fallback(op) for op in graph.ops], dtype=bool)
        self.source = np.array([self.source_index(op) for op in graph.ops], dtype=int)  # [ops]
        self.kv_index = np.array([graph.index[op.name] for op in graph.kv_cache_ops], dtype=int)

    def is_fallback(self, op: Op) -> bool:
        """Whether the model costs the op outside its calibrated domain."""
        return self.counts_fallbacks and not self.model.covers(op)

    def source_index(self, op: Op) -> int:
        """The op's time source as an index into TIME_SOURCES."""
        return TIME_SOURCES.index(self.model.time_source(op))

    def grown(self, kv_advance: int) -> list[tuple[int, Op]]:
        """The ops that read a KV cache, with caches `kv_advance` positions longer: (index in graph, op)."""
        if not kv_advance:
            return []
        grown = []
        for i in self.kv_index:
            op = self.graph.ops[i]
            grown.append((i, type(op)(op.name, op.shape.advanced(kv_advance), op.dtype)))
        return grown

    def kernel_times(self, grown: Sequence[tuple[int, Op]]) -> np.ndarray:
        """Kernel seconds per op [ops] of the call in which the `grown` ops replace the graph's."""
        return replaced(self.kernel_s, grown, self.model.op_time)

    def fallbacks(self, grown: Sequence[tuple[int, Op]]) -> np.ndarray:
        """Per op [ops], whether it is costed outside the model's domain, with the `grown` ops replaced."""
        return replaced(self.fallback, grown, self.is_fallback)

    def call(self, kv_advance: int = 0) -> CallTime:
        """The call whose KV caches are `kv_advance` positions longer than the graph's."""
        return self.call_with(self.grown(kv_advance))

    def call_with(self, grown: Sequence[tuple[int, Op]]) -> CallTime:
        """The call in which the `grown` ops (see `grown`) replace the graph's."""
        d = self.kernel_times(grown)
        per_category = np.bincount(self.category, weights=d, minlength=len(CATEGORIES))
        per_source = np.bincount(replaced(self.source, grown, self.source_index), weights=d, minlength=len(TIME_SOURCES))
        return CallTime(
            seconds=finish_time(d, self.dispatched, self.synchronous),
            device_s=float(d.sum()),
            by_category_s={c: float(s) for c, s in zip(CATEGORIES, per_category) if s > 0},
            fallback_ops=int(self.fallbacks(grown).sum()),
            by_source_s={c: float(s) for c, s in zip(TIME_SOURCES, per_source) if s > 0},
        )


def sum_calls(calls: Sequence[CallTime]) -> CallTime:
    """Calls run one after another: wall, kernel, per-category and per-source seconds and fallbacks add up."""
    seconds = device_s = 0.0
    fallback_ops = 0
    by_category_s: dict[str, float] = {}
    by_source_s: dict[str, float] = {}
    for c in calls:
        seconds += c.seconds
        device_s += c.device_s
        fallback_ops += c.fallback_ops
        for k, v in c.by_category_s.items():
            by_category_s[k] = by_category_s.get(k, 0.0) + v
        for k, v in c.by_source_s.items():
            by_source_s[k] = by_source_s.get(k, 0.0) + v
    return CallTime(seconds, device_s, by_category_s, fallback_ops, by_source_s)


def replaced(per_op: np.ndarray, grown: Sequence[tuple[int, Op]], value) -> np.ndarray:
    """per_op [ops] with value(op) at each grown op's index (per_op itself when nothing grew)."""
    if not grown:
        return per_op
    out = per_op.copy()
    for i, op in grown:
        out[i] = value(op)
    return out
