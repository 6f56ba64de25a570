"""Stage and Pipeline: what one request runs, and how often.

A Pipeline is the ordered stages of one request: a text encoder once, a UNet
`steps` times with classifier-free guidance doubling its batch, a decoder once;
or a prefill followed by decode steps whose KV cache grows by one position per
call. A stage builds its OpGraph for any per-call batch (the engine batches
requests together) and memoizes it.

Per-request sums over calls are exact: for decode stages only the attention ops
that read the KV cache change from call to call, so the sum is the first call's
value times the number of calls plus, for each distinct cached-attention shape,
the change at every later call.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Mapping, TypeVar

from emulator.graph import OpGraph, Totals
from emulator.ops import Op

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
    _graphs: dict = field(default_factory=dict, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.calls < 1 or self.batch < 1:
            raise ValueError(f"stage {self.name}: calls and batch must be >= 1")
        if not self.weights:
            object.__setattr__(self, "weights", self.name)

    def graph(self, batch: int | None = None, call: int = 0) -> OpGraph:
        """The graph of call number `call` (0-based) at a per-call batch (default: this request's)."""
        batch = self.batch if batch is None else batch
        if batch not in self._graphs:
            self._graphs[batch] = self.build(batch)
        return self._graphs[batch].with_kv_advanced(call * self.kv_growth)

    def over_calls(self, per_graph: Callable[[OpGraph], T], per_op: Callable[[Op], T], batch: int | None = None) -> T:
        """Sum of a metric over all calls of one request.

        `per_graph(g)` must equal the sum of `per_op` over g's ops; only the
        cached-attention ops are re-evaluated for later calls.
        """
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
