"""Graph transforms: a stage's single-device OpGraph -> the OpGraph ONE rank runs under a ParallelPlan.

`shard(graph, plan)` rewrites every op to its per-rank shape and inserts the
communication (`emulator.shapes.Collective`, message sizes as NCCL counts them):

- Ulysses (U ranks): ops outside attention carry ceil(L / U) of the L tokens
  (the sequence padded to U blocks); each long self-attention runs on heads / U
  over the whole sequence, with an all-to-all of q, k and v before it and of
  its output after it, each of one rank's [B, L / U, H x d] buffer (k and v:
  its K/V heads, at least one per rank, under grouped-query attention).
  Cross-attention keeps its text keys whole and runs on the rank's queries.
- Ring (R ranks): the attention runs R times, on L / R queries against
  successive key/value blocks of L / R tokens; R - 1 send/recv steps move the
  next K and V block ([2, B, L / R, H x d]) while the current block computes
  (the send/recv and that block have no edge between them: they overlap,
  `overlaps()` lists the pairs), and R - 1 pointwise merges combine the
  partial outputs. With Ulysses too (USP), the ring runs on the all-to-all's
  output: L / R tokens and heads / U.
- Tensor (T ranks): column linears (q, k, v, MLP up) keep n / T outputs, row
  linears (attention output, MLP down) k / T inputs, attention heads / T,
  the ops between them their share; an all-reduce of the row linear's full
  output follows each row linear.
- Sequence-parallel output: one all-gather over the U x R ranks of the last
  op's output (the full prediction on every rank).
- CFG (2 ranks): the graph is built at the rank's half of the batch (or the
  stage's calls halved, with guidance run as two calls, see
  `emulator.parallel.stage`); one all-gather of the output per call follows.

- PipeFusion (P stages, M patches): `emulator.parallel.pipefusion`; with CFG
  the pair's outputs are gathered as above.
- Spatial (a VAE decoder's rows over P ranks): `emulator.parallel.spatial`.

A plan with every degree 1 returns the graph itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from math import ceil, gcd

import networkx as nx

from emulator.graph import OpGraph
from emulator.ops import Op
from emulator.parallel.pipefusion import pipefusion_rank, send_overlaps
from emulator.parallel.plan import ParallelPlan
from emulator.parallel.roles import Sequences, TensorRoles, sequences, tensor_roles, token_length
from emulator.parallel.spatial import spatial_rank
from emulator.shapes import Attention, Collective, Elementwise, Linear, Norm, Softmax


@dataclass(frozen=True)
class Context:
    plan: ParallelPlan
    seq: Sequences
    roles: TensorRoles
    column_widths: frozenset[int]  # output widths of the column linears: norms over them split with them
    dtype: str

    def local(self, length: int) -> int:
        """Tokens of a split sequence on one rank (the sequence padded to equal blocks)."""
        return ceil(length / self.plan.sequence)


@dataclass(frozen=True)
class Piece:
    """One op's replacement: ops in execution order, edges among them, which read the op's inputs, which
    gives its output."""

    ops: tuple[Op, ...]
    edges: tuple[tuple[str, str], ...]
    entries: tuple[str, ...]
    exit: str


def single(op: Op) -> Piece:
    return Piece((op,), (), (op.name,), op.name)


def comm(name: str, kind: str, elements: int, ranks: int, dtype: str) -> Op:
    """A collective over `ranks` GPUs; `elements` as NCCL counts the message (see Collective)."""
    return Op(name, Collective(kind, elements, ranks), dtype)


# -- compute ops: tokens split by sequence parallelism, widths by tensor parallelism -------------------------
def _tokens(elements: int, length: int | None, ctx: Context) -> int:
    """elements = batch x length x width -> batch x local(length) x width."""
    return elements if length is None else elements // length * ctx.local(length)


def shard_compute(op: Op, ctx: Context) -> Op:
    """A non-attention op at its per-rank shape."""
    s, t = op.shape, ctx.plan.tensor
    length = token_length(s, ctx.seq) if ctx.plan.sequence > 1 else None
    role = ctx.roles.linears.get(op.name)
    if isinstance(s, Linear):
        m = _tokens(s.m, length, ctx)
        k = s.k // t if role == "row" else s.k
        n = s.n // t if role == "column" else s.n
        return replace(op, shape=Linear(m, k, n, s.bias))
    split = t if op.name in ctx.roles.between else 1
    if isinstance(s, Elementwise):
        return replace(op, shape=Elementwise(s.op, _tokens(s.elements, length, ctx) // split, s.inputs))
    if isinstance(s, Norm):
        channels = s.channels // split if s.channels in ctx.column_widths else s.channels
        return replace(op, shape=Norm(s.norm, _tokens(s.elements, length, ctx) // split, channels, s.groups, s.batch))
    if isinstance(s, Softmax) and length is not None:
        return replace(op, shape=Softmax(s.rows // length * ctx.local(length), s.cols))
    return op


def row_linear(op: Op, ctx: Context) -> Piece:
    """A row-parallel linear and the all-reduce of its full output [m, n]."""
    lin = shard_compute(op, ctx)
    reduce = comm(f"{op.name}.tensor.all_reduce", "all_reduce", lin.shape.output_elements, ctx.plan.tensor,
                  ctx.dtype)
    return Piece((lin, reduce), ((lin.name, reduce.name),), (lin.name,), reduce.name)


# -- attention: Ulysses all-to-alls, ring blocks, tensor-parallel heads ------------------------------------
def ring_blocks(op: Op, a: Attention, q_src: tuple[str, ...], kv_src: tuple[str, ...], r: int,
                dtype: str) -> tuple[list[Op], list[tuple[str, str]], str]:
    """R partial attentions of `a` (one key/value block each), R - 1 K/V send/recvs and R - 1 merges.

    Send/recv i brings block i while block i - 1 computes: no edge joins them (they overlap)."""
    block = a.batch * a.q_len * a.heads * a.head_dim  # one K or V block, [B, L / R, heads x d]
    ops: list[Op] = []
    edges: list[tuple[str, str]] = []
    prev_kv, out = kv_src, ""
    for i in range(r):
        if i + 1 < r:  # issued before block i computes
            sr = comm(f"{op.name}.ring.kv.{i + 1}", "send_recv", 2 * block, 2, dtype)
            ops.append(sr)
            edges += [(src, sr.name) for src in prev_kv]
        att = Op(f"{op.name}.ring.{i}", a, op.dtype)
        ops.append(att)
        edges += [(src, att.name) for src in q_src + (kv_src if i == 0 else (f"{op.name}.ring.kv.{i}",))]
        if i + 1 < r:
            prev_kv = (f"{op.name}.ring.kv.{i + 1}",)
        if i == 0:
            out = att.name
            continue
        merge = Op(f"{op.name}.ring.merge.{i}", Elementwise("add", block, 2), op.dtype)
        ops.append(merge)
        edges += [(out, merge.name), (att.name, merge.name)]
        out = merge.name
    return ops, edges, out


def split_heads(a, ranks: int, **changes):
    """Attention `a` on one of `ranks` splitting its heads: heads / ranks query heads and their K/V heads
    (grouped-query attention: kv_heads / ranks, at least one, more ranks than K/V heads replicating them)."""
    heads = a.heads // ranks
    return replace(a, heads=heads, kv_heads=gcd(heads, max(1, a.key_value_heads // ranks)), **changes)


def long_attention(op: Op, ctx: Context) -> Piece:
    """A self-attention over a split sequence: Ulysses all-to-alls around ring blocks (or one attention)."""
    a, u, r = op.shape, ctx.plan.ulysses, ctx.plan.ring
    heads = a.heads // ctx.plan.tensor
    local = ctx.local(a.q_len)  # tokens per rank outside attention
    buffer = a.batch * local * heads * a.head_dim  # one rank's q, k, v or output: [B, L / (U R), heads x d]
    inner = split_heads(a, ctx.plan.tensor * u, q_len=local * u, kv_len=local * u)  # [B, heads / U, L / R, d]
    ops: list[Op] = []
    edges: list[tuple[str, str]] = []
    # K and V carry the K/V heads (grouped-query attention: fewer; repeated where a rank would get none)
    kv_buffer = a.batch * local * inner.key_value_heads * u * a.head_dim
    if u > 1:
        ops = [comm(f"{op.name}.ulysses.all_to_all_{x}", "all_to_all", size, u, ctx.dtype)
               for x, size in zip("qkv", (buffer, kv_buffer, kv_buffer))]
        q_src, kv_src = (ops[0].name,), (ops[1].name, ops[2].name)
    else:
        q_src = kv_src = ()
    if r > 1:
        ring_ops, ring_edges, out = ring_blocks(op, inner, q_src, kv_src, r, ctx.dtype)
    else:
        ring_ops, ring_edges, out = [Op(op.name, inner, op.dtype)], [(s, op.name) for s in q_src + kv_src], op.name
    ops += ring_ops
    edges += ring_edges
    if u > 1:
        back = comm(f"{op.name}.ulysses.all_to_all_out", "all_to_all", buffer, u, ctx.dtype)
        ops.append(back)
        edges.append((out, back.name))
        out = back.name
        entries = tuple(o.name for o in ops[:3])
    else:
        entries = tuple(o.name for o in ring_ops if "merge" not in o.name)
    return Piece(tuple(ops), tuple(edges), entries, out)


def attention_piece(op: Op, ctx: Context) -> Piece:
    a, p = op.shape, ctx.plan
    split = p.sequence > 1 and a.q_len in ctx.seq.lengths
    if split and a.q_len == a.kv_len:
        return long_attention(op, ctx)
    q_len = ctx.local(a.q_len) if split else a.q_len  # cross-attention: local queries, whole text keys
    return single(replace(op, shape=split_heads(a, p.tensor, q_len=q_len)))


# -- the whole graph ------------------------------------------------------------------------------------
def piece(op: Op, ctx: Context) -> Piece:
    if isinstance(op.shape, Attention):
        return attention_piece(op, ctx)
    if ctx.plan.tensor > 1 and ctx.roles.linears.get(op.name) == "row":
        return row_linear(op, ctx)
    return single(shard_compute(op, ctx))


def context(graph: OpGraph, plan: ParallelPlan) -> Context:
    seq = sequences(graph) if plan.sequence > 1 else Sequences(1, (), frozenset())
    roles = tensor_roles(graph) if plan.tensor > 1 else TensorRoles({}, frozenset())
    columns = frozenset(graph.op(n).shape.n for n, role in roles.linears.items() if role == "column")
    dtype = graph.ops[0].dtype if graph.ops else "fp16"
    return Context(plan, seq, roles, columns, dtype)


def output_gathers(graph: OpGraph, last: Piece, ctx: Context) -> list[Op]:
    """All-gathers of the call's output (the last op's): over the sequence ranks, then across the CFG pair."""
    p, ops = ctx.plan, []
    out = last.ops[-1]
    if p.sequence > 1 and token_length(graph.ops[-1].shape, ctx.seq) is not None:
        gathered = out.shape.output_elements * p.sequence  # [B, U R ceil(L / (U R)), width]
        ops.append(comm(f"{out.name}.sequence.all_gather", "all_gather", gathered, p.sequence, ctx.dtype))
        full = gathered
    else:
        full = out.shape.output_elements
    if p.cfg > 1:
        ops.append(comm(f"{out.name}.cfg.all_gather", "all_gather", p.cfg * full, p.cfg, ctx.dtype))
    return ops


def shard(graph: OpGraph, plan: ParallelPlan) -> OpGraph:
    """The graph one rank runs under `plan` (`graph` built at the rank's batch); degree 1: `graph` itself."""
    if plan.degree == 1 or not graph.ops:
        return graph
    if plan.spatial > 1:
        return spatial_rank(graph, plan.spatial)
    if plan.pipefusion > 1:
        return cfg_gathered(pipefusion_rank(graph, plan.pipefusion, plan.patch_count), graph.ops[-1], plan)
    ctx = context(graph, plan)
    pieces = {op.name: piece(op, ctx) for op in graph.ops}
    structure = nx.DiGraph()
    ops: list[Op] = []
    for op in graph.ops:
        ops += pieces[op.name].ops
        structure.add_nodes_from(o.name for o in pieces[op.name].ops)
        structure.add_edges_from(pieces[op.name].edges)
    for u, v in graph.structure.edges:
        structure.add_edges_from((pieces[u].exit, entry) for entry in pieces[v].entries)
    prev = pieces[graph.ops[-1].name].exit
    for gather in output_gathers(graph, pieces[graph.ops[-1].name], ctx):
        ops.append(gather)
        structure.add_edge(prev, gather.name)
        prev = gather.name
    return OpGraph(ops, nx.freeze(structure))


def cfg_gathered(graph: OpGraph, output: Op, plan: ParallelPlan) -> OpGraph:
    """`graph` followed by the CFG pair's all-gather of the call's output (`output`, the single-device graph's
    last op); `graph` itself without CFG."""
    if plan.cfg == 1:
        return graph
    gather = comm(f"{output.name}.cfg.all_gather", "all_gather", plan.cfg * output.shape.output_elements,
                  plan.cfg, output.dtype)
    structure = nx.DiGraph(graph.structure)
    structure.add_edge(graph.ops[-1].name, gather.name)
    return OpGraph(graph.ops + (gather,), nx.freeze(structure))


def ulysses(graph: OpGraph, degree: int) -> OpGraph:
    return shard(graph, ParallelPlan(ulysses=degree))


def ring(graph: OpGraph, degree: int) -> OpGraph:
    return shard(graph, ParallelPlan(ring=degree))


def tensor_parallel(graph: OpGraph, degree: int) -> OpGraph:
    return shard(graph, ParallelPlan(tensor=degree))


def overlaps(graph: OpGraph) -> tuple[tuple[str, str], ...]:
    """(communication, compute) pairs that run at the same time: each ring K/V send/recv and the partial
    attention computing while it moves the next block; each PipeFusion patch send and the next patch's
    first attention."""
    pairs = send_overlaps(graph)
    for op in graph.ops:
        head, sep, step = op.name.rpartition(".ring.kv.")
        if sep and isinstance(op.shape, Collective):
            pairs.append((op.name, f"{head}.ring.{int(step) - 1}"))
    return tuple(pairs)
