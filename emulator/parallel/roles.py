"""What each op of a single-device graph is to a parallel plan, read from shapes and edges.

Graphs carry shapes, not tensor dimensions, so the roles are inferred:
- `Sequences`: the per-sample token counts sequence parallelism splits: the
  longest self-attention's length and every linear's row count per sample
  within 2x of it (HunyuanVideo: the joint video + text sequence and the
  video alone; a 256-token text refiner stays whole). An op carries such a
  sequence when its rows are batch x length (a linear's m, a softmax's rows)
  or its elements are batch x length x a width of the model (a linear's k or
  n, an attention's heads x head_dim). Convolutions, resampling and
  embeddings are left whole: they run replicated on every rank.
- `TensorRoles`: the linears Megatron tensor parallel splits. Column (output
  features / P): a linear whose output reaches an attention's q, k or v
  through norms and pointwise ops, and an MLP's up projection; row (input
  features / P): a linear reading an attention's output, and an MLP's down
  projection. The ops on those paths (QK norms, RoPE, the activation, a
  concatenation) are split with them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil
from typing import Mapping

from emulator.graph import OpGraph
from emulator.shapes import Attention, Elementwise, Linear, Norm, Softmax

# Pointwise ops a column -> attention or column -> row path may cross (never a residual add).
PATH_OPS = ("rope", "copy", "memcpy", "gelu", "silu", "quick_gelu", "geglu", "swiglu", "mul", "scale")
ACTIVATIONS = ("gelu", "silu", "quick_gelu", "geglu", "swiglu")


@dataclass(frozen=True)
class Sequences:
    batch: int
    lengths: tuple[int, ...]  # per-sample token counts split across ranks, longest first
    widths: frozenset[int]  # feature widths of the model (linear k and n, attention heads x head_dim)

    def length_of_rows(self, rows: int) -> int | None:
        """The split length l with rows == batch x l, if any."""
        for length in self.lengths:
            if rows == self.batch * length:
                return length
        return None

    def length_of_elements(self, elements: int) -> int | None:
        """The split length l with elements == batch x l x (a model width), if any."""
        for length in self.lengths:
            per = self.batch * length
            if elements % per == 0 and elements // per in self.widths:
                return length
        return None


def longest_sequence(graph: OpGraph) -> int:
    """q_len of the stage's longest self-attention (query and key length equal): the sequence split (0: none)."""
    return max((op.shape.q_len for op in graph.attention_ops if op.shape.q_len == op.shape.kv_len), default=0)


def sequences(graph: OpGraph) -> Sequences:
    """The sequences of `graph` that sequence parallelism splits (none: no self-attention)."""
    selfs = [op.shape for op in graph.attention_ops if op.shape.q_len == op.shape.kv_len]
    if not selfs:
        return Sequences(1, (), frozenset())
    longest = max(selfs, key=lambda a: a.q_len)
    batch = longest.batch
    found = {a.q_len for a in selfs if 2 * a.q_len >= longest.q_len}
    widths = {op.shape.heads * op.shape.head_dim for op in graph.attention_ops}
    for op in graph.ops:
        if isinstance(op.shape, Linear):
            widths |= {op.shape.k, op.shape.n}
            if op.shape.m % batch == 0 and 2 * (op.shape.m // batch) >= longest.q_len:
                found.add(op.shape.m // batch)
    return Sequences(batch, tuple(sorted(found, reverse=True)), frozenset(widths))


def token_length(shape, seq: Sequences) -> int | None:
    """The split sequence an op's shape carries, or None (weights-only, text, timestep, conv ops)."""
    if isinstance(shape, Linear):
        return seq.length_of_rows(shape.m)
    if isinstance(shape, Softmax):
        return seq.length_of_rows(shape.rows)
    if isinstance(shape, (Elementwise, Norm)):
        return seq.length_of_elements(shape.elements)
    return None


@dataclass(frozen=True)
class TensorRoles:
    linears: Mapping[str, str]  # linear op name -> "column" | "row"
    between: frozenset[str]  # pointwise and norm ops between a column linear and its attention or row linear


def _walk_back(graph: OpGraph, name: str, path: frozenset, found: dict, between: set) -> None:
    """From `name`'s producers back through PATH_OPS and norms to linears; those become column."""
    for pred in graph.structure.predecessors(name):
        shape = graph.op(pred).shape
        if isinstance(shape, Linear):
            found.setdefault(pred, "column")
            between.update(path)
        elif isinstance(shape, Norm) or (isinstance(shape, Elementwise) and shape.op in PATH_OPS):
            _walk_back(graph, pred, path | {pred}, found, between)


def _walk_forward(graph: OpGraph, name: str, path: frozenset, found: dict, between: set) -> None:
    """From an attention's output forward through copies to the linears reading it; those become row."""
    for succ in graph.structure.successors(name):
        shape = graph.op(succ).shape
        if isinstance(shape, Linear):
            found[succ] = "row"
            between.update(path)
        elif isinstance(shape, Elementwise) and shape.op in ("copy", "memcpy"):
            _walk_forward(graph, succ, path | {succ}, found, between)


def _mlp_pairs(graph: OpGraph, found: dict, between: set) -> None:
    """Up projection -> activation -> down projection back to the input width: column, then row."""
    for op in graph.ops:
        up = op.shape
        if not isinstance(up, Linear) or up.n <= up.k or op.name in found:
            continue
        for act in graph.structure.successors(op.name):
            a = graph.op(act).shape
            if not (isinstance(a, Elementwise) and a.op in ACTIVATIONS):
                continue
            for down in graph.structure.successors(act):
                d = graph.op(down).shape
                if isinstance(d, Linear) and d.n == up.k and d.k in (up.n, up.n // 2) and down not in found:
                    found[op.name], found[down] = "column", "row"
                    between.add(act)


def tensor_roles(graph: OpGraph) -> TensorRoles:
    found: dict[str, str] = {}
    between: set[str] = set()
    for op in graph.attention_ops:
        _walk_forward(graph, op.name, frozenset(), found, between)
    for op in graph.attention_ops:
        _walk_back(graph, op.name, frozenset(), found, between)
    _mlp_pairs(graph, found, between)
    for name in [n for n, role in found.items() if role == "row"]:  # the MLP half of a fused output (HunyuanVideo)
        _walk_back(graph, name, frozenset(), found, between)
    return TensorRoles(found, frozenset(between))


def split_tokens(shape, parts: int):
    """A token-wise shape on one of `parts` pieces of its rows (tokens, positions, elements), rounded up;
    attention keeps its full-length K/V. Other shapes are returned unchanged."""
    if isinstance(shape, Linear):  # [m, k] x [k, n]: m tokens
        return replace(shape, m=ceil(shape.m / parts))
    if isinstance(shape, Attention):  # q_len queries against kv_len keys
        return replace(shape, q_len=ceil(shape.q_len / parts))
    if isinstance(shape, Softmax):
        return replace(shape, rows=ceil(shape.rows / parts))
    if isinstance(shape, Norm):  # elements = batch x rows x channels
        rows = shape.elements // (shape.batch * shape.channels)
        return replace(shape, elements=shape.batch * ceil(rows / parts) * shape.channels)
    if isinstance(shape, Elementwise):
        return replace(shape, elements=ceil(shape.elements / parts))
    return shape
