"""The graph of a partial call, derived from the full graph by name scopes: blocks kept, the rest reused.

A stage's blocks are found from op names, not written per model: a DiT's
`<stage>.transformer_blocks.N`, `<stage>.single_transformer_blocks.N` or
`<stage>.blocks.N` (depth = position in the stack, across stacks in execution
order), a UNet's `<stage>.down.N` and `<stage>.up.N` (depth = level N) and
`<stage>.mid` (the deepest). A call of depth k keeps every op outside the
blocks and the blocks of depth below k; the removed ops (one contiguous span in
execution order, checked) are replaced by one elementwise add of the cached
residual, as large as the last removed op's output, which is also the tensor a
request keeps between calls.
"""

from __future__ import annotations

import networkx as nx

from emulator.graph import OpGraph
from emulator.ops import Op
from emulator.shapes import Elementwise

STACKS = ("transformer_blocks", "single_transformer_blocks", "blocks")
LEVELS = ("down", "up")


def block_depths(graph: OpGraph) -> list[int | None]:
    """Per op: its block's depth, or None outside the blocks."""
    order: dict[tuple[str, str], int] = {}
    depths: list[int | None] = []
    levels = 1 + max((int(p[2]) for p in (op.name.split(".") for op in graph.ops)
                      if len(p) > 2 and p[1] in LEVELS and p[2].isdigit()), default=-1)
    for op in graph.ops:
        parts = op.name.split(".")
        if len(parts) > 2 and parts[1] in STACKS and parts[2].isdigit():
            depths.append(order.setdefault((parts[1], parts[2]), len(order)))
        elif len(parts) > 2 and parts[1] in LEVELS and parts[2].isdigit():
            depths.append(int(parts[2]))
        elif len(parts) > 1 and parts[1] == "mid":
            depths.append(levels)
        else:
            depths.append(None)
    return depths


def block_count(graph: OpGraph) -> int:
    """Depths a call can stop at: blocks of a DiT stack, levels (and the middle) of a UNet; 0 without blocks."""
    return 1 + max((d for d in block_depths(graph) if d is not None), default=-1)


def removed_span(graph: OpGraph, depth: int) -> tuple[int, int] | None:
    """(first, last) index of the ops a call of `depth` does not run; None if it runs them all."""
    removed = [i for i, d in enumerate(block_depths(graph)) if d is not None and d >= depth]
    if not removed:
        return None
    first, last = removed[0], removed[-1]
    if last - first + 1 != len(removed):
        raise ValueError(f"the blocks of depth >= {depth} are not one contiguous run of ops")
    return first, last


def cached_bytes(graph: OpGraph, depth: int) -> int:
    """Bytes of the residual a call of `depth` reuses: the last removed op's output."""
    span = removed_span(graph, depth)
    return 0 if span is None else graph.ops[span[1]].output_bytes


def partial_graph(graph: OpGraph, depth: int, scope: str) -> OpGraph:
    """The graph of a call that computes the blocks of depth below `depth` and reuses the cached residual."""
    span = removed_span(graph, depth)
    if span is None:
        return graph
    first, last = span
    ops = graph.ops
    out = ops[last]
    reuse = Op(f"{scope}.cache.reuse", Elementwise("add", out.shape.output_elements, 2), out.dtype)
    removed = {op.name for op in ops[first:last + 1]}
    kept = [op.name for op in ops if op.name not in removed]
    structure = nx.DiGraph(graph.structure.subgraph(kept))
    structure.add_node(reuse.name)
    for name in kept[:first]:  # ops before the span that fed it now feed the reuse
        if any(v in removed for v in graph.structure.successors(name)):
            structure.add_edge(name, reuse.name)
    for name in kept[first:]:  # ops after the span that read it now read the reuse
        if any(u in removed for u in graph.structure.predecessors(name)):
            structure.add_edge(reuse.name, name)
    if first and not structure.in_degree(reuse.name):
        structure.add_edge(ops[first - 1].name, reuse.name)
    return OpGraph(list(ops[:first]) + [reuse] + list(ops[last + 1:]), nx.freeze(structure))
