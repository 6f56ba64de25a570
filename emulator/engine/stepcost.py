"""What one call of a stage costs a device at a batch: seconds, work, memory, kernel segments.

The engine asks for the same few (stage, batch, call) triples millions of
times, so everything is memoized: a `StageAtBatch` holds the graph's per-op
arrays once (kernel seconds, host dispatch times, FLOPs and bytes under the
attention implementation), and a decode call re-costs only the ops that read
the growing KV cache, as the timeline's `GraphCoster.grown` gives them. Times
come from the cost model through the host/device timeline of
`emulator.cost.timeline` under the scenario's runtime, so a batch step here is
exactly the call time `describe` reports.

A stage registered as another's twin (`emulator.engine.variants`: the decode
of a request whose prompt differs from the stage's) is costed by the twin's
StageAtBatch: a stage of another KV growth `offset` positions ahead through a
`ShiftedAt` (its own calls, so its own final KV cache), any other stage as the
twin itself. Call `c` of a shifted stage is the twin's call `c + offset`, so
decode calls are costed once per KV length whatever the prompt. A shifted
stage's activation peak is its final call's: with fused attention the same at
every KV length; with baseline attention costed per final length.

A stage with a per-call schedule (`emulator.schedules`: step caching, guidance
on part of the steps) is costed per kind of call: `step(call)` and
`segments(call)` look up the call's kind, each kind's graph (`Stage.call_graph`)
costed once; `cost_of` sums the kinds a batch runs. Its activation peak is the
full call's (the largest), and the residuals its schedule caches are resident
bytes of a request, like a KV cache.
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
from emulator.schedules import FULL_CALL, CallKind


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
        self.resident_bytes = stage.final_kv_cache_bytes(batch) if stage.kv_growth else stage.cache_bytes(batch)
        self._kinds: dict[CallKind, tuple] = {}  # kind -> (coster, FLOPs per op, bytes per op) of a scheduled stage
        self._kind_steps: dict[CallKind, StepCost] = {}
        self._kind_segments: dict[CallKind, tuple[Segment, ...]] = {}
        self._cost_of: dict[tuple, tuple] = {}
        one = self.step(0) if stage.kv_growth else self.kind_step(FULL_CALL)
        self.first = (one.seconds, one.flops, one.bytes, one.fallback_ops)  # the engine's hot path reads this
        self.base, self.offset = self, 0  # calls are costed here, at these positions
        self._kv_bytes: dict[int, int] = {}
        self._activation: dict[int, int] = {}

    def kv_bytes_at(self, call: int) -> int:
        """KV-cache bytes held after call `call` (0-based, any call, past this stage's own too)."""
        if call not in self._kv_bytes:
            self._kv_bytes[call] = self.stage.graph(self.batch, call).kv_cache_bytes
        return self._kv_bytes[call]

    def activation_at(self, call: int) -> int:
        """Activation peak of call `call`: grows with the KV length only under baseline attention."""
        if self.attention != "baseline":
            return self.activation_bytes
        if call not in self._activation:
            self._activation[call] = self.stage.graph(self.batch, call).peak_activation_bytes(self.attention)
        return self._activation[call]

    def _kv_advance(self, call: int) -> int:
        return call * self.stage.kv_growth

    def step(self, call: int) -> StepCost:
        if not self.stage.kv_growth and self.stage.schedule is not None:
            return self.kind_step(self.stage.schedule.kinds[call])
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

    def kind_parts(self, kind: CallKind) -> tuple:
        """(coster, FLOPs per op, bytes per op) of a call of `kind` at this batch."""
        if kind == FULL_CALL:
            return self.coster, self.flops, self.bytes
        if kind not in self._kinds:
            graph = self.stage.call_graph(kind, self.batch)
            w = [work(op, self.attention) for op in graph.ops]
            coster = GraphCoster(graph, self.model, self.model.device.synchronous, self.coster.runtime)
            self._kinds[kind] = (coster, np.array([f for f, _ in w], dtype=float),
                                 np.array([b for _, b in w], dtype=float))
        return self._kinds[kind]

    def kind_step(self, kind: CallKind) -> StepCost:
        """One call of `kind` (a non-KV stage)."""
        if kind == FULL_CALL and 0 in self.calls:
            return self.calls[0]
        if kind not in self._kind_steps:
            coster, flops, moved = self.kind_parts(kind)
            t = coster.call()
            self._kind_steps[kind] = StepCost(t.seconds, t.device_s, float(flops.sum()), float(moved.sum()),
                                              t.fallback_ops)
            if kind == FULL_CALL:
                self.calls[0] = self._kind_steps[kind]
        return self._kind_steps[kind]

    def cost_of(self, kinds: dict[CallKind, int]) -> tuple:
        """(seconds, FLOPs, bytes, fallback ops) of calls run back to back, given as calls per kind."""
        key = tuple(kinds.items())
        found = self._cost_of.get(key)
        if found is None:
            steps = [(self.kind_step(k), n) for k, n in kinds.items()]
            found = self._cost_of[key] = (sum(c.seconds * n for c, n in steps), sum(c.flops * n for c, n in steps),
                                          sum(c.bytes * n for c, n in steps), sum(c.fallback_ops * n for c, n in steps))
        return found

    def segments(self, call: int) -> tuple[Segment, ...]:
        """The call's kernels grouped by character, in alone time, for the concurrency model."""
        if not self.stage.kv_growth and self.stage.schedule is not None:
            return self.kind_segments(self.stage.schedule.kinds[call])
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

    def kind_segments(self, kind: CallKind) -> tuple[Segment, ...]:
        """Segments of one call of `kind` (a non-KV stage)."""
        if kind == FULL_CALL:
            return self.segments(0) if self.stage.schedule is None else self._full_segments()
        if kind not in self._kind_segments:
            coster, flops, moved = self.kind_parts(kind)
            self._kind_segments[kind] = self._segments_of(coster, flops, moved)
        return self._kind_segments[kind]

    def _full_segments(self) -> tuple[Segment, ...]:
        if FULL_CALL not in self._kind_segments:
            self._kind_segments[FULL_CALL] = self._segments_of(self.coster, self.flops, self.bytes)
        return self._kind_segments[FULL_CALL]

    def _segments_of(self, coster: GraphCoster, flops: np.ndarray, moved: np.ndarray) -> tuple[Segment, ...]:
        dev = self.model.device
        ops = coster.graph.ops
        compute_s, memory_s = demands(flops, moved, ops, dev)
        occupied = np.array([occupancy(op, self.attention, dev.sms) for op in ops])
        return kernel_segments(coster.kernel_times(()), coster.dispatched, compute_s, memory_s, occupied, flops,
                               moved, dev.synchronous)


class ShiftedAt:
    """A KV-growing stage costed as its twin's StageAtBatch `offset` positions ahead, with its own calls."""

    def __init__(self, base: StageAtBatch, offset: int, stage: Stage):
        self.base, self.offset, self.stage, self.batch = base, offset, stage, base.batch
        last = offset + stage.calls - 1
        self.activation_bytes = base.activation_at(last)
        self.resident_bytes = base.kv_bytes_at(last)
        one = base.step(offset)
        self.first = (one.seconds, one.flops, one.bytes, one.fallback_ops)

    def step(self, call: int) -> StepCost:
        return self.base.step(call + self.offset)

    def segments(self, call: int) -> tuple[Segment, ...]:
        return self.base.segments(call + self.offset)


class StepCosts:
    """Memoized costs of every (stage, batch) the engine forms, under one cost model and runtime.

    `twins`: id(stage) -> (the stage it is costed as, KV offset), shared by a scenario's StepCosts."""

    def __init__(self, model: CostModel, runtime: Runtime = EAGER, twins: dict | None = None):
        self.model, self.runtime = model, runtime
        self.twins = {} if twins is None else twins
        self._at: dict[tuple[int, int], StageAtBatch | ShiftedAt] = {}
        self._seq: dict[int, int] = {}

    def at(self, stage: Stage, batch: int) -> StageAtBatch | ShiftedAt:
        key = (id(stage), batch)
        found = self._at.get(key)
        if found is None:
            twin = self.twins.get(id(stage))
            if twin is None:
                found = StageAtBatch(stage, batch, self.model, self.runtime)
            elif stage.kv_growth:
                found = ShiftedAt(self.at(twin[0], batch), twin[1], stage)
            else:
                found = self.at(twin[0], batch)
            self._at[key] = found
        return found

    def step(self, stage: Stage, batch: int, call: int) -> StepCost:
        return self.at(stage, batch).step(call)

    def seq_len(self, stage: Stage) -> int:
        """Longest attention sequence (query tokens) of one call; 0 for a stage without attention."""
        stage = self.twins.get(id(stage), (stage,))[0]
        key = id(stage)
        if key not in self._seq:
            self._seq[key] = max((op.shape.q_len for op in stage.graph(stage.batch).attention_ops), default=0)
        return self._seq[key]
