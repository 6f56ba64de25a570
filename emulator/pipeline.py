"""Stage and Pipeline: what one request runs, and how often.

A Pipeline is the ordered stages of one request: a text encoder once, a UNet
`steps` times with classifier-free guidance doubling its batch, a decoder once;
or a prefill followed by decode steps whose KV cache grows by one position per
call. A stage builds its OpGraph for any per-call batch (the engine batches
requests together) and memoizes it.

Per-request sums over calls are exact: for decode stages only the attention ops
that read the KV cache change from call to call, so the sum is the first call's
value times the number of calls plus, for each distinct cached-attention shape,
the change at every later call. A stage with a per-call schedule
(`emulator.schedules`: step caching, guidance on part of the steps) sums per
kind of call: each kind's graph (derived from the full graph by
`emulator.call_graphs`) times its number of calls; the residuals it caches are
memory a request holds while it lives (`cache_bytes`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, TypeVar

from emulator.call_graphs import cached_bytes, partial_graph
from emulator.graph import OpGraph, Totals
from emulator.ops import Op
from emulator.schedules import FULL, FULL_CALL, CallKind, CallSchedule

T = TypeVar("T")


@dataclass(frozen=True)
class Stage:
    name: str  # locates the component in the pipeline: "unet", "sr_256"
    description: str
    build: Callable[[int], OpGraph]  # per-call batch -> graph of the first call
    calls: int  # calls per request
    batch: int  # per-call batch for one request (guidance already doubled)
    kv_growth: int = 0  # KV-cache positions added per call (autoregressive decode)
    weights: str = ""  # stages with the same key share parameters; default: the name
    # Analytic similarity-matrix bytes of one call at a batch, where an analytic
    # model of the stage exists (diffusion UNets); None otherwise.
    similarity_formula: Callable[[int], int] | None = None
    schedule: CallSchedule | None = None  # per-call kinds; None: every call computes everything
    _graphs: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.calls < 1 or self.batch < 1:
            raise ValueError(f"stage {self.name}: calls and batch must be >= 1")
        if not self.weights:
            object.__setattr__(self, "weights", self.name)
        if self.schedule is not None and (self.kv_growth or len(self.schedule.kinds) != self.calls):
            raise ValueError(f"stage {self.name}: a schedule needs one kind per call and no KV growth")

    def graph(self, batch: int | None = None, call: int = 0) -> OpGraph:
        """The graph of call number `call` (0-based) at a per-call batch (default: this request's)."""
        batch = self.batch if batch is None else batch
        if batch not in self._graphs:
            self._graphs[batch] = self.build(batch)
        return self._graphs[batch].with_kv_advanced(call * self.kv_growth)

    def kind(self, call: int) -> CallKind:
        """The kind of call number `call` (0-based)."""
        return FULL_CALL if self.schedule is None else self.schedule.kinds[call]

    def kind_batch(self, kind: CallKind, batch: int | None = None) -> int:
        """Per-call batch of a call of `kind` at a per-call batch (default: this request's)."""
        batch = self.batch if batch is None else batch
        return max(batch // 2, 1) if kind.half else batch

    def call_graph(self, kind: CallKind, batch: int | None = None) -> OpGraph:
        """The graph of a call of `kind` at a per-call batch (default: this request's)."""
        batch = self.kind_batch(kind, batch)
        if kind.depth == FULL:
            return self.graph(batch)
        key = (batch, kind.depth)
        if key not in self._graphs:
            self._graphs[key] = partial_graph(self.graph(batch), kind.depth, self.name)
        return self._graphs[key]

    def kind_counts(self) -> dict[CallKind, int]:
        """Calls per kind of one request."""
        return {FULL_CALL: self.calls} if self.schedule is None else self.schedule.counts

    def cache_bytes(self, batch: int | None = None) -> int:
        """Bytes a request keeps between calls for its schedule's reuse (0 without caching)."""
        s = self.schedule
        if s is None or not s.caches:
            return 0
        full = self.graph(batch)
        largest = max(cached_bytes(full, k.depth) for k in s.counts if k.depth != FULL)
        return largest * s.cached_tensors * s.branches

    def over_calls(self, per_graph: Callable[[OpGraph], T], per_op: Callable[[Op], T], batch: int | None = None) -> T:
        """Sum of a metric over all calls of one request.

        `per_graph(g)` must equal the sum of `per_op` over g's ops; only the
        cached-attention ops are re-evaluated for later calls.
        """
        if self.schedule is not None:
            parts = [per_graph(self.call_graph(k, batch)) * n for k, n in self.schedule.counts.items()]
            total = parts[0]
            for part in parts[1:]:
                total = total + part
            return total
        first = self.graph(batch)
        total = per_graph(first) * self.calls
        if self.kv_growth and self.calls > 1:
            distinct = Counter((op.shape, op.dtype) for op in first.kv_cache_ops)
            for (shape, dtype), count in distinct.items():
                base = per_op(Op("", shape, dtype))
                for call in range(1, self.calls):
                    grown = per_op(Op("", shape.advanced(call * self.kv_growth), dtype))
                    total = total + (grown - base) * count
        return total

    def request_totals(self, batch: int | None = None) -> Totals:
        return self.over_calls(lambda g: g.totals, lambda op: Totals.of([op]), batch)

    def final_kv_cache_bytes(self, batch: int | None = None) -> int:
        """KV-cache bytes held after the last call."""
        return self.graph(batch, self.calls - 1).kv_cache_bytes


@dataclass(frozen=True)
class Pipeline:
    workload: str
    params: Mapping[str, object]  # the resolved workload config
    stages: tuple[Stage, ...]

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(f"{self.workload} has no stage {name!r}; stages: {[s.name for s in self.stages]}")

    def request_totals(self) -> Totals:
        total = Totals()
        for s in self.stages:
            total = total + s.request_totals()
        return total

    @property
    def params_total(self) -> int:
        """Parameters of the whole pipeline, counting shared weights once."""
        seen: dict[str, int] = {}
        for s in self.stages:
            seen.setdefault(s.weights, s.graph().totals.params)
        return sum(seen.values())

    def peak_activation_bytes(self, attention: str = "default") -> int:
        """Largest activation footprint of any one call (stages run one after another)."""
        return max(s.graph(call=s.calls - 1).peak_activation_bytes(attention) for s in self.stages)
