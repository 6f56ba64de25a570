"""What one call of a stage costs a device at a batch: seconds, work, memory, kernel segments.

The engine asks for the same few (stage, batch, call) triples millions of
times, so everything is memoized: a `StageAtBatch` holds the graph's per-op
arrays once (kernel seconds, host dispatch times, FLOPs and bytes under the
attention implementation), and a decode call re-costs only the ops that read
the growing KV cache, as the timeline's `GraphCoster.grown` gives them. Times
come from the cost model through the host/device timeline of
`emulator.cost.timeline` under the scenario's runtime, so a batch step here is
exactly the call time `describe` reports.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.cost.kernels import work
from emulator.cost.model import CostModel
from emulator.cost.runtime import EAGER, Runtime
from emulator.cost.timeline import GraphCoster
from emulator.engine.concurrency import Segment, demands, kernel_segments, occupancy
from emulator.pipeline import Stage


@dataclass(frozen=True)
class StepCost:
    seconds: float  # wall time of the call: host dispatch and device kernels (timeline)
    device_s: float  # sum of kernel times
    flops: float  # FLOPs the kernels perform
    bytes: float  # device-memory bytes the kernels move
    fallback_ops: int  # ops costed outside the profile's calibrated domain


class StageAtBatch:
    """One stage's graph at one per-call batch, costed under one model and runtime."""

    def __init__(self, stage: Stage, batch: int, model: CostModel, runtime: Runtime = EAGER):
        self.stage, self.batch, self.model, self.attention = stage, batch, model, model.attention
        graph = stage.graph(batch)
        self.coster = GraphCoster(graph, model, model.device.synchronous, runtime)
        w = [work(op, self.attention) for op in graph.ops]
        self.flops = np.array([f for f, _ in w], dtype=float)
        self.bytes = np.array([b for _, b in w], dtype=float)
        self.calls: dict[int, StepCost] = {}
        self._segments: dict[int, tuple[Segment, ...]] = {}
        # Peak of the last call: baseline similarity matrices grow with the KV length.
        self.activation_bytes = stage.graph(batch, stage.calls - 1).peak_activation_bytes(self.attention)
        self.resident_bytes = stage.final_kv_cache_bytes(batch) if stage.kv_growth else 0
        one = self.step(0)
        self.first = (one.seconds, one.flops, one.bytes, one.fallback_ops)  # the engine's hot path reads this

    def _kv_advance(self, call: int) -> int:
        return call * self.stage.kv_growth

    def step(self, call: int) -> StepCost:
        key = call if self.stage.kv_growth else 0
        if key not in self.calls:
            grown = self.coster.grown(self._kv_advance(key))
            t = self.coster.call_with(grown)
            flops, moved = float(self.flops.sum()), float(self.bytes.sum())
            for i, op in grown:  # the work of the ops whose KV caches grew
                f, b = work(op, self.attention)
                flops += f - self.flops[i]
                moved += b - self.bytes[i]
            self.calls[key] = StepCost(t.seconds, t.device_s, flops, moved, t.fallback_ops)
        return self.calls[key]

    def segments(self, call: int) -> tuple[Segment, ...]:
        """The call's kernels grouped by character, in alone time, for the concurrency model."""
        key = call if self.stage.kv_growth else 0
        if key not in self._segments:
            kernel_s = self.coster.kernel_times(self.coster.grown(self._kv_advance(key)))
            dev = self.model.device
            ops = self.coster.graph.ops
            compute_s, memory_s = demands(self.flops, self.bytes, ops, dev)
            occupied = np.array([occupancy(op, self.attention, dev.sms) for op in ops])
            self._segments[key] = kernel_segments(kernel_s, self.coster.dispatched, compute_s, memory_s, occupied,
                                                  self.flops, self.bytes, dev.synchronous)
        return self._segments[key]


class StepCosts:
    """Memoized costs of every (stage, batch) the engine forms, under one cost model and runtime."""

    def __init__(self, model: CostModel, runtime: Runtime = EAGER):
        self.model, self.runtime = model, runtime
        self._at: dict[tuple[int, int], StageAtBatch] = {}
        self._seq: dict[int, int] = {}

    def at(self, stage: Stage, batch: int) -> StageAtBatch:
        key = (id(stage), batch)
        found = self._at.get(key)
        if found is None:
            found = self._at[key] = StageAtBatch(stage, batch, self.model, self.runtime)
        return found

    def step(self, stage: Stage, batch: int, call: int) -> StepCost:
        return self.at(stage, batch).step(call)

    def seq_len(self, stage: Stage) -> int:
        """Longest attention sequence (query tokens) of one call; 0 for a stage without attention."""
        key = id(stage)
        if key not in self._seq:
            self._seq[key] = max((op.shape.q_len for op in stage.graph(stage.batch).attention_ops), default=0)
        return self._seq[key]
