"""VAE patch-parallel decode: a convolutional decoder's latent split by rows over P ranks (xDiT DistVAE).

Each rank decodes ceil(H / P) of every feature map's H rows (the split is
the height, the second-to-last spatial axis; frames and width stay whole):

- A convolution whose kernel spans kh > stride rows first exchanges halo
  rows with each neighbour: two `send_recv`s (to the rank above and the one
  below, an inner rank's case) of [B, c_in, (frames,) kh // 2, W] each.
  1 x 1, temporal-only and patch-embedding convolutions exchange nothing.
- A group norm's statistics span the whole map: an `all_reduce` of each
  sample's per-group sum and sum of squares ([B, groups, 2]) precedes it.
  RMS and layer norms normalize each position alone and exchange nothing.
- Pointwise ops, norms, upsampling and the projections of a mid-block
  attention run on the rank's rows; the attention takes the rank's queries
  against all keys and values, gathered by one `all_gather` of [2, B, heads,
  L, d] (L padded to P equal blocks).
- The decoded output is gathered once: an `all_gather` of the last op's
  output.

Rows are rounded up per op (ceil), so every rank is the largest.
"""

from __future__ import annotations

from dataclasses import replace
from math import ceil

import networkx as nx

from emulator.errors import UserError
from emulator.graph import OpGraph
from emulator.ops import Op
from emulator.parallel.listing import MAX_LISTED, listed
from emulator.parallel.roles import split_tokens
from emulator.shapes import Attention, Collective, Conv, Norm, Resample


def needs_halo(shape) -> bool:
    """A convolution whose kernel spans more rows than its stride (a patch embedding's does not)."""
    return isinstance(shape, Conv) and len(shape.size) >= 2 and shape.kernel[-2] > shape.stride


def spatial_convs(graph: OpGraph) -> list[Op]:
    """Convolutions reading neighbouring rows: the ones that need halos."""
    return [op for op in graph.ops if needs_halo(op.shape)]


def latent_rows(graph: OpGraph) -> int:
    """Rows of the first spatially-convolved map (the latent the split starts from)."""
    return spatial_convs(graph)[0].shape.size[-2]


def valid_degrees(graph: OpGraph) -> list[int]:
    """Degrees giving every rank a latent row and at least the widest halo's rows."""
    rows, halo = latent_rows(graph), max(op.shape.kernel[-2] // 2 for op in spatial_convs(graph))
    return [p for p in range(2, MAX_LISTED + 1) if p <= rows and ceil(rows / p) >= halo]


def check_spatial(stage: str, graph: OpGraph, p: int) -> None:
    if not spatial_convs(graph):
        raise UserError(f"{stage}: spatial={p} splits a VAE's convolutions by rows, and the stage has none")
    valid = valid_degrees(graph)
    if p not in valid:
        raise UserError(f"{stage}: spatial={p} leaves a rank fewer latent rows than a convolution's halo "
                        f"(latent {latent_rows(graph)} rows); valid degrees: {listed(valid)}")


def rows_split(shape, p: int):
    """A shape on one rank: its rows (and the tokens, positions or elements they carry) / p, rounded up."""
    if isinstance(shape, (Conv, Resample)):  # size = (..., height, width)
        size = shape.size[:-2] + (ceil(shape.size[-2] / p), shape.size[-1])
        return replace(shape, size=size)
    return split_tokens(shape, p)


def halo_elements(conv: Conv) -> int:
    """One halo sent to one neighbour: [B, c_in, (frames,) kh // 2, W]."""
    other = 1
    for s in conv.size[:-2]:
        other *= s
    return conv.batch * conv.c_in * other * (conv.kernel[-2] // 2) * conv.size[-1]


def exchanges(op: Op, p: int) -> list[Op]:
    """The collectives that must precede `op` on one of `p` ranks."""
    s, dtype = op.shape, op.dtype
    if needs_halo(s):
        halo = halo_elements(s)
        return [Op(f"{op.name}.halo.{side}", Collective("send_recv", halo, 2), dtype) for side in ("up", "down")]
    if isinstance(s, Norm) and s.norm == "group":
        return [Op(f"{op.name}.stats.all_reduce", Collective("all_reduce", s.batch * s.groups * 2, p), dtype)]
    if isinstance(s, Attention):
        kv = 2 * s.batch * s.key_value_heads * p * ceil(s.kv_len / p) * s.head_dim  # [2, B, heads, L, d]
        return [Op(f"{op.name}.kv.all_gather", Collective("all_gather", kv, p), dtype)]
    return []


def spatial_rank(graph: OpGraph, p: int) -> OpGraph:
    """One rank's graph of a VAE decoder under `spatial=P`: rows / P, halos, norm statistics, K/V and output
    gathers."""
    ops: list[Op] = []
    edges: list[tuple[str, str]] = []
    entry: dict[str, list[str]] = {}
    for op in graph.ops:
        pre = exchanges(op, p)
        ops += pre + [replace(op, shape=rows_split(op.shape, p))]
        edges += [(c.name, op.name) for c in pre]
        entry[op.name] = [c.name for c in pre] or [op.name]
    for u, v in graph.structure.edges:
        edges += [(u, e) for e in entry[v]]
    last = ops[-1]
    gather = Op(f"{last.name}.spatial.all_gather", Collective("all_gather", p * last.shape.output_elements, p),
                last.dtype)
    ops.append(gather)
    edges.append((last.name, gather.name))
    structure = nx.DiGraph()
    structure.add_nodes_from(op.name for op in ops)
    structure.add_edges_from(edges)
    return OpGraph(ops, nx.freeze(structure))
