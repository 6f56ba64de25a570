"""PipeFusion: a DiT's layers in P pipeline stages, each step's sequence in M patches (xDiT).

The model follows PipeFusion (Fang et al., arXiv 2405.14430) with these
assumptions, each stated against the paper:

- Layers: the stage's transformer layers are the repeated blocks (ops named
  `<prefix>.<i>.`) holding a self-attention over the longest sequence; they
  are cut into P contiguous groups balanced by FLOPs (HunyuanVideo's 20
  dual-stream and 40 single-stream blocks differ in cost; the paper splits by
  layer count). Other ops between a rank's layers (HunyuanVideo's joining of
  the two streams) go with them. The other ops (timestep and text embedders, a text refiner,
  the final projection) run whole on every rank once per step: they are under
  1% of a DiT's FLOPs, and the paper puts them on the first or last stage.
- Patches: every op of a layer handles 1/M of the tokens per patch
  (ceil), text tokens of a joint sequence included; a self-attention runs its
  patch's queries against the full-length keys and values (the paper's stale
  K/V: the other patches' K/V come from the previous step), and a copy of the
  patch's fresh K and V into that full buffer follows it. Per-sample ops
  (modulation) repeat per patch, as the block's forward runs once per patch.
- Communication: after its layers, each rank sends the patch's activation,
  [B, ceil(L / M), hidden] with L the longest self-attention's length, to
  the next stage (the last stage sends the patch's output back to the first
  for the next step): one `send_recv` per patch. Sends are asynchronous in
  the paper; `overlaps` pairs each with the next patch's first attention.
- One rank's graph is the stage with the most FLOPs (the pipeline's pace);
  its per-step time is M patches of its layers.
- Bubble (`bubble_s`): the pipeline fills once per request, not per step,
  since patch j of step t + 1 needs only patch j of step t: (P - 1) patch
  times. Warm-up: the first step (both guidance passes when run as two
  calls) has no stale K/V, so, like the paper's warm-up steps (one assumed
  here; the number is a setting in xDiT), it runs the full sequence through
  the P stages one after another: P full-sequence stage times in place of
  one step.
- The memory reported is the rank with the most FLOPs; with unequal layers
  (FLUX.1's and HunyuanVideo's two block kinds) another rank may hold more
  weights.
- Memory: a rank holds its layers' weights and, per self-attention layer, the
  full-length K/V buffer [2, B, L, kv_heads x d] (`stale_kv_bytes`).
"""

from __future__ import annotations

import re
from math import ceil

import networkx as nx

from emulator.errors import UserError
from emulator.graph import OpGraph
from emulator.ops import Op
from emulator.parallel.listing import MAX_LISTED, listed
from emulator.parallel.roles import longest_sequence, split_tokens
from emulator.shapes import Attention, Collective, Elementwise

LAYER = re.compile(r"^(.*?\.\d+)\.")  # "transformer.blocks.7.attn1.to_q" -> "transformer.blocks.7"
PATCH = ".patch."  # patch j >= 1 of an op is named "<op>.patch.<j>"; patch 0 keeps the op's name
SEND = ".pipefusion.send."


def layer_of(name: str) -> str | None:
    m = LAYER.match(name)
    return m.group(1) if m else None


def long_attentions(graph: OpGraph) -> list[Op]:
    """Self-attentions over the longest sequence (the ones PipeFusion patches)."""
    length = longest_sequence(graph)
    return [op for op in graph.attention_ops if length and op.shape.q_len == op.shape.kv_len == length]


def layers(graph: OpGraph) -> list[str]:
    """Layer names in execution order: repeated blocks holding a self-attention over the longest sequence."""
    keyed = {layer_of(op.name) for op in long_attentions(graph)} - {None}
    seen: dict[str, None] = {}
    for op in graph.ops:
        key = layer_of(op.name)
        if key in keyed:
            seen.setdefault(key)
    return list(seen)


def split_layers(graph: OpGraph, stages: int) -> list[list[str]]:
    """Layers cut into `stages` contiguous groups of about equal FLOPs (equal counts if that leaves one empty)."""
    names = layers(graph)
    flops = dict.fromkeys(names, 0)
    for op in graph.ops:
        key = layer_of(op.name)
        if key in flops:
            flops[key] += op.flops
    total, done = sum(flops.values()), 0
    groups: list[list[str]] = [[] for _ in range(stages)]
    for name in names:  # a layer goes to the stage its FLOPs midpoint falls in
        groups[min(stages - 1, int(stages * (done + flops[name] / 2) / total))].append(name)
        done += flops[name]
    if any(not g for g in groups):
        size = ceil(len(names) / stages)
        groups = [names[i * size:(i + 1) * size] for i in range(stages)]
    return groups


def check_pipefusion(stage: str, graph: OpGraph, p: int, m: int) -> None:
    """PipeFusion needs at least P layers, at least P patches (else the pipeline never fills), and no more
    patches than tokens."""
    n = len(layers(graph))
    if not n:
        raise UserError(f"{stage}: pipefusion={p} splits repeated transformer layers with a self-attention, "
                        f"and the stage has none")
    if p > n:
        raise UserError(f"{stage}: pipefusion={p} exceeds the stage's {n} layers; valid degrees: "
                        f"{listed(list(range(2, min(n, MAX_LISTED) + 1)))}")
    if m < p:
        raise UserError(f"{stage}: patches={m} is fewer than pipefusion={p} stages (the pipeline never "
                        f"fills); give patches >= {p}")
    length = longest_sequence(graph)
    if m > length:
        raise UserError(f"{stage}: patches={m} exceeds the sequence's {length} tokens")
    if any(not g for g in split_layers(graph, p)):
        raise UserError(f"{stage}: pipefusion={p} leaves a stage without layers ({n} layers)")


# -- one rank's graph ---------------------------------------------------------------------------------------
def patch_name(name: str, j: int) -> str:
    return name if j == 0 else f"{name}{PATCH}{j}"


def is_patch_copy(name: str) -> bool:
    """Whether an op is a repeat (patch >= 1) of an op already in the graph: its weights are counted once."""
    return PATCH in name


def heaviest_stage(graph: OpGraph, groups: list[list[str]]) -> int:
    flops = [0] * len(groups)
    where = {name: i for i, g in enumerate(groups) for name in g}
    for op in graph.ops:
        i = where.get(layer_of(op.name))
        if i is not None:
            flops[i] += op.flops
    return max(range(len(groups)), key=flops.__getitem__)


def pipefusion_rank(graph: OpGraph, stages: int, patches: int, stage: int | None = None) -> OpGraph:
    """The graph of pipeline stage `stage` (default: the one with the most FLOPs) for one step: the other
    ops whole, its layers once per patch, a K/V buffer copy after each long attention and one send per patch."""
    m = patches
    groups = split_layers(graph, stages)
    mine = set(groups[heaviest_stage(graph, groups) if stage is None else stage])
    all_layers = {name for g in groups for name in g}
    long = {op.name: op.shape for op in long_attentions(graph)}
    first = next(a for a in long if layer_of(a) in mine)
    dtype = graph.ops[0].dtype
    a = long[first]
    message = a.batch * ceil(a.q_len / m) * a.heads * a.head_dim  # [B, L / M, hidden] per patch
    spots = [i for i, op in enumerate(graph.ops) if layer_of(op.name) in mine]
    before, after, layer_ops = [], [], []  # other ops between two of the stage's layers are patched with them
    for i, op in enumerate(graph.ops):
        if layer_of(op.name) in mine or (layer_of(op.name) not in all_layers and spots[0] < i < spots[-1]):
            layer_ops.append(op)
        elif layer_of(op.name) not in all_layers:
            (after if i > spots[-1] else before).append(op)
    kept = {op.name for op in before + after + layer_ops}
    inner = {op.name for op in layer_ops}
    ops: list[Op] = list(before)
    edges: list[tuple[str, str]] = []
    for j in range(m):
        written = None  # the K/V copy writes into the stale buffer (counted as K/V): done with at the next op
        for op in layer_ops:
            ops.append(Op(patch_name(op.name, j), split_tokens(op.shape, m), op.dtype))
            if written:
                edges.append((written, ops[-1].name))
                written = None
            if op.name in long:
                s = long[op.name]
                kv = 2 * s.batch * ceil(s.q_len / m) * s.key_value_heads * s.head_dim  # this patch's K and V
                ops.append(Op(f"{patch_name(op.name, j)}.kv_buffer", Elementwise("copy", kv), op.dtype))
                edges.append((ops[-2].name, ops[-1].name))
                written = ops[-1].name
        if written:
            edges.append((written, f"{first}{SEND}{j}"))
        send = Op(f"{first}{SEND}{j}", Collective("send_recv", message, 2), dtype)
        ops.append(send)
        edges.append((patch_name(layer_ops[-1].name, j), send.name))
    ops += after
    fed = {u for u, v in graph.structure.edges if u in inner and v in inner | {a.name for a in after}}
    for op in layer_ops:  # outputs read only by other stages (or the K/V buffer) are done with at the send
        if op.name not in fed:
            edges += [(patch_name(op.name, j), f"{first}{SEND}{j}") for j in range(m)
                      if patch_name(op.name, j) != patch_name(layer_ops[-1].name, j)]
    for u, v in graph.structure.edges:
        if u not in kept or v not in kept:
            continue
        if u in inner and v in inner:
            edges += [(patch_name(u, j), patch_name(v, j)) for j in range(m)]
        elif v in inner:
            edges += [(u, patch_name(v, j)) for j in range(m)]
        elif u in inner:
            edges.append((patch_name(u, m - 1), v))
        else:
            edges.append((u, v))
    structure = nx.DiGraph()
    structure.add_nodes_from(op.name for op in ops)
    structure.add_edges_from(edges)
    return OpGraph(ops, nx.freeze(structure))


def send_overlaps(graph: OpGraph) -> list[tuple[str, str]]:
    """(send, attention) pairs: each patch's send against the next long attention (wrapping to the first:
    the last patch's send overlaps the next step)."""
    attentions = [i for i, op in enumerate(graph.ops) if isinstance(op.shape, Attention)]
    if not attentions:
        return []
    pairs = []
    for i, op in enumerate(graph.ops):
        if SEND in op.name and isinstance(op.shape, Collective):
            nxt = next((k for k in attentions if k > i), attentions[0])
            pairs.append((op.name, graph.ops[nxt].name))
    return pairs


def stale_kv_bytes(graph: OpGraph) -> int:
    """Full-length K/V buffers of a PipeFusion rank graph's long attentions (patch 0 names each once)."""
    total = 0
    for op in graph.attention_ops:
        a = op.shape
        if op.name.endswith(".kv_buffer") or is_patch_copy(op.name) or a.q_len == a.kv_len:
            continue
        if f"{op.name}.kv_buffer" in graph.index:
            total += 2 * a.batch * a.kv_len * a.key_value_heads * a.head_dim * op.dtype_bytes
    return total


def bubble_s(step_s: float, warmup_step_s: float, p: int, m: int, warmup_calls: int, fills: int = 1) -> float:
    """Seconds a request spends beyond its calls' own time: each of `fills` fills of P - 1 patches (`step_s`
    one pipelined full call), and each warm-up call's P sequential full-sequence stages (`warmup_step_s`
    each) in place of one pipelined step."""
    return fills * (p - 1) * step_s / m + warmup_calls * (p * warmup_step_s - step_s)
