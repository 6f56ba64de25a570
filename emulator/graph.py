"""OpGraph: the operators of one model call and their real data dependencies.

Nodes of a `networkx.DiGraph` are op names; an edge u -> v means v reads u's
output (residual connections and UNet skips included). The ops are kept in
execution order, the order eager PyTorch would launch them, which is checked to
be a topological order of the edges. Graphs are immutable once built.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, fields
from functools import cached_property
from typing import Iterable, Sequence

import networkx as nx

from emulator.attention import ATTENTION_IMPLEMENTATIONS, DEFAULT_ATTENTION
from emulator.liveness import peak_live_bytes
from emulator.ops import CATEGORIES, Op
from emulator.shapes import Attention


@dataclass(frozen=True)
class Totals:
    """Sums over a set of ops. Params are elements, the rest bytes or FLOPs."""

    ops: int = 0
    flops: int = 0
    mac_flops: int = 0
    bytes: int = 0
    params: int = 0
    weight_bytes: int = 0
    similarity_bytes: int = 0

    @classmethod
    def of(cls, ops: Iterable[Op]) -> "Totals":
        n = flops = mac = moved = params = weight = sim = 0
        for op in ops:
            n += 1
            flops += op.flops
            mac += op.mac_flops
            moved += op.bytes
            params += op.shape.weight_elements
            weight += op.weight_bytes
            sim += op.similarity_bytes
        return cls(n, flops, mac, moved, params, weight, sim)

    def __add__(self, other: "Totals") -> "Totals":
        return Totals(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __sub__(self, other: "Totals") -> "Totals":
        return Totals(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def __mul__(self, n: int) -> "Totals":
        return Totals(*(getattr(self, f.name) * n for f in fields(self)))


class OpGraph:
    def __init__(self, ops: Sequence[Op], structure: nx.DiGraph, validate: bool = True):
        self.ops: tuple[Op, ...] = tuple(ops)
        self.structure = structure
        if validate:
            self._check()

    def _check(self) -> None:
        index = {op.name: i for i, op in enumerate(self.ops)}
        if len(index) != len(self.ops):
            dup = [name for name, c in Counter(op.name for op in self.ops).items() if c > 1]
            raise ValueError(f"duplicate op names: {dup[:5]}")
        if set(self.structure.nodes) != set(index):
            raise ValueError("graph structure and op list name different ops")
        for u, v in self.structure.edges:
            if index[u] >= index[v]:
                raise ValueError(f"execution order is not topological: {u} runs after its consumer {v}")

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self):
        return iter(self.ops)

    @cached_property
    def index(self) -> dict[str, int]:
        return {op.name: i for i, op in enumerate(self.ops)}

    def op(self, name: str) -> Op:
        return self.ops[self.index[name]]

    @cached_property
    def totals(self) -> Totals:
        return Totals.of(self.ops)

    @cached_property
    def by_category(self) -> dict[str, Totals]:
        """Totals per category, in the fixed order of `CATEGORIES`, empty ones left out."""
        groups: dict[str, list[Op]] = {}
        for op in self.ops:
            groups.setdefault(op.category, []).append(op)
        return {c: Totals.of(groups[c]) for c in CATEGORIES if c in groups}

    @cached_property
    def attention_ops(self) -> tuple[Op, ...]:
        """Attention ops in execution order: the sequence-length profile of one call."""
        return tuple(op for op in self.ops if isinstance(op.shape, Attention))

    def attention_profile(self) -> list[tuple[str, str, int, int]]:
        """(name, variant, q_len, kv_len) of each attention call in execution order."""
        return [(op.name, op.shape.variant, op.shape.q_len, op.shape.kv_len) for op in self.attention_ops]

    @cached_property
    def kv_cache_bytes(self) -> int:
        return sum(op.kv_cache_bytes for op in self.attention_ops)

    @cached_property
    def last_use(self) -> tuple[int, ...]:
        """Index of the last op reading each op's output; graph outputs live to the end."""
        end = len(self.ops) - 1
        idx = self.index
        return tuple(
            max((idx[v] for v in self.structure.successors(op.name)), default=end) for op in self.ops
        )

    def peak_activation_bytes(self, attention: str = DEFAULT_ATTENTION) -> int:
        """Peak bytes of live activations over one call in execution order.

        With `attention="baseline"`, each attention op also holds its similarity
        matrix while it runs; every other implementation is fused and holds none. Graph inputs (latents, text embeddings) and weights
        are not counted; tensors are never updated in place.
        """
        if attention != DEFAULT_ATTENTION and attention not in ATTENTION_IMPLEMENTATIONS:
            raise ValueError(f"unknown attention implementation {attention!r}")
        workspace = [op.similarity_bytes if attention == "baseline" else 0 for op in self.ops]
        return peak_live_bytes([op.output_bytes for op in self.ops], self.last_use, workspace)

    def with_kv_advanced(self, tokens: int) -> "OpGraph":
        """The graph of a decode step `tokens` positions later: KV-cache attention grows.

        Shares the dependency structure with this graph; only the attention ops
        that read a KV cache are replaced.
        """
        if tokens == 0:
            return self
        ops = [
            Op(op.name, op.shape.advanced(tokens), op.dtype)
            if isinstance(op.shape, Attention) and op.shape.kv_cache
            else op
            for op in self.ops
        ]
        # Same names in the same order over the same edges: already validated.
        return OpGraph(ops, self.structure, validate=False)

    @cached_property
    def kv_cache_ops(self) -> tuple[Op, ...]:
        return tuple(op for op in self.attention_ops if op.shape.kv_cache)
