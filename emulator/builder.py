"""GraphBuilder: write a model's forward pass on shape-only tensors, get an OpGraph.

Each method takes `Tensor` handles (a shape and the op that produced it), adds
one op with an edge from every producer it reads, and returns the output
handle. Names are scoped (`with b.scope("down.1"):`) so every op is located.
Shape conventions: images [B, C, H, W]; token sequences [B, L, D]; video runs
its spatial ops on [B*F, C, H, W].
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from math import prod
from typing import Iterator

import networkx as nx

from emulator.graph import OpGraph
from emulator.ops import Op
from emulator.shapes import (
    Attention,
    Collective,
    Conv,
    Elementwise,
    Embedding,
    Linear,
    Matmul,
    Norm,
    Resample,
    Shape,
    Softmax,
)


@dataclass(frozen=True)
class Tensor:
    shape: tuple[int, ...]
    node: str | None = None  # the op that produced it; None for a graph input

    @property
    def numel(self) -> int:
        return prod(self.shape)

    def view(self, *shape: int) -> "Tensor":
        """A reshape that moves no data (the element count must not change)."""
        if prod(shape) != self.numel:
            raise ValueError(f"cannot view {self.shape} as {shape}")
        return Tensor(tuple(shape), self.node)

    def narrow(self, dim: int, length: int) -> "Tensor":
        """The first `length` entries along `dim` (a slice that moves no data)."""
        shape = list(self.shape)
        if not 0 < length <= shape[dim]:
            raise ValueError(f"cannot narrow dim {dim} of {self.shape} to {length}")
        shape[dim] = length
        return Tensor(tuple(shape), self.node)


class GraphBuilder:
    def __init__(self, dtype: str = "fp16"):
        self.dtype = dtype
        self._ops: list[Op] = []
        self._structure = nx.DiGraph()
        self._scope: list[str] = []

    # -- plumbing ---------------------------------------------------------
    @contextmanager
    def scope(self, name: str | int) -> Iterator[None]:
        self._scope.append(str(name))
        try:
            yield
        finally:
            self._scope.pop()

    def input(self, *shape: int) -> Tensor:
        return Tensor(tuple(shape))

    def add(self, name: str, shape: Shape, inputs: tuple[Tensor, ...], out_shape: tuple[int, ...]) -> Tensor:
        full = ".".join([*self._scope, name])
        op = Op(full, shape, self.dtype)
        if prod(out_shape) != shape.output_elements:
            raise ValueError(f"{full}: output {out_shape} does not hold {shape.output_elements} elements")
        self._ops.append(op)
        self._structure.add_node(full)
        for t in inputs:
            if t.node is not None:
                self._structure.add_edge(t.node, full)
        return Tensor(tuple(out_shape), full)

    def build(self) -> OpGraph:
        return OpGraph(self._ops, nx.freeze(self._structure))

    # -- operators --------------------------------------------------------
    def linear(self, name: str, x: Tensor, n: int, bias: bool = True) -> Tensor:
        """x[..., k] -> [..., n]."""
        *lead, k = x.shape
        return self.add(name, Linear(prod(lead), k, n, bias), (x,), (*lead, n))

    def matmul(self, name: str, a: Tensor, b: Tensor) -> Tensor:
        """a[batch, m, k] @ b[batch, k, n] -> [batch, m, n]."""
        (batch, m, k), (_, k2, n) = a.shape, b.shape
        if k != k2:
            raise ValueError(f"{name}: inner dims {k} and {k2} differ")
        return self.add(name, Matmul(batch, m, k, n), (a, b), (batch, m, n))

    def conv2d(self, name: str, x: Tensor, c_out: int, kernel: int = 3, stride: int = 1,
               groups: int = 1, bias: bool = True) -> Tensor:
        """x[B, C, H, W] -> [B, c_out, ceil(H/stride), ceil(W/stride)]."""
        b, c, h, w = x.shape
        shape = Conv(b, c, c_out, (h, w), (kernel, kernel), stride, groups, bias)
        return self.add(name, shape, (x,), (b, c_out, *shape.out_size))

    def temporal_conv(self, name: str, x: Tensor, frames: int, kernel: int = 3) -> Tensor:
        """1-d conv over frames at every position of x[B*F, C, H, W] (pseudo-3D conv).

        Runs as a conv1d on [B*H*W, C, F]; the two layout changes around it are
        real copies in eager PyTorch and are recorded as such.
        """
        bf, c, h, w = x.shape
        b = bf // frames
        t = self.elementwise(f"{name}.to_time", "copy", x).view(b * h * w, c, frames)
        shape = Conv(b * h * w, c, c, (frames,), (kernel,))
        y = self.add(name, shape, (t,), (b * h * w, c, frames))
        return self.elementwise(f"{name}.to_space", "copy", y).view(bf, c, h, w)

    def attention(self, name: str, q: Tensor, k: Tensor, v: Tensor, heads: int, variant: str,
                  causal: bool = False, kv_cache: bool = False) -> Tensor:
        """q[B, Lq, heads*d], k/v[B, Lk, kv_heads*d] -> [B, Lq, heads*d]; K/V narrower than Q: grouped-query
        attention, kv_heads = heads * K width / Q width (each K/V head shared by a group of query heads)."""
        b, lq, dim = q.shape
        _, lk, kv_dim = k.shape
        if dim % heads:
            raise ValueError(f"{name}: width {dim} not divisible by {heads} heads")
        head_dim = dim // heads
        if kv_dim % head_dim or heads % (kv_dim // head_dim):
            raise ValueError(f"{name}: K/V width {kv_dim} is no group of {heads} heads of {head_dim}")
        shape = Attention(b, heads, lq, lk, head_dim, variant, causal, kv_cache, kv_heads=kv_dim // head_dim)
        return self.add(name, shape, (q, k, v), (b, lq, dim))

    def group_norm(self, name: str, x: Tensor, groups: int = 32) -> Tensor:
        """x[B, C, ...]: statistics per (sample, group of channels)."""
        return self.add(name, Norm("group", x.numel, x.shape[1], groups, batch=x.shape[0]), (x,), x.shape)

    def layer_norm(self, name: str, x: Tensor) -> Tensor:
        """x[..., D]: statistics per token over D."""
        return self.add(name, Norm("layer", x.numel, x.shape[-1]), (x,), x.shape)

    def rms_norm(self, name: str, x: Tensor) -> Tensor:
        return self.add(name, Norm("rms", x.numel, x.shape[-1]), (x,), x.shape)

    def softmax(self, name: str, x: Tensor) -> Tensor:
        """Softmax over the last dim of x[..., cols]."""
        *lead, cols = x.shape
        return self.add(name, Softmax(prod(lead), cols), (x,), x.shape)

    def elementwise(self, name: str, op: str, x: Tensor, *others: Tensor) -> Tensor:
        """A pointwise op shaped like x; `others` of x's size count as inputs, smaller ones broadcast."""
        inputs = 1 + sum(1 for o in others if o.numel == x.numel)
        return self.add(name, Elementwise(op, x.numel, inputs), (x, *others), x.shape)

    def add_(self, name: str, x: Tensor, y: Tensor) -> Tensor:
        """Residual or skip addition x + y."""
        return self.elementwise(name, "add", x, y)

    def concat(self, name: str, *xs: Tensor, dim: int = 1) -> Tensor:
        """torch.cat along `dim`: one streaming copy of all inputs into a new tensor."""
        out = list(xs[0].shape)
        out[dim] = sum(x.shape[dim] for x in xs)
        return self.add(name, Elementwise("memcpy", prod(out), 1), xs, tuple(out))

    def gated(self, name: str, op: str, x: Tensor) -> Tensor:
        """GEGLU/SwiGLU: x[..., 2n] split into (value, gate) -> [..., n]."""
        *lead, two_n = x.shape
        out = (*lead, two_n // 2)
        return self.add(name, Elementwise(op, prod(out), 2), (x,), out)

    def upsample(self, name: str, x: Tensor, factor: int = 2) -> Tensor:
        """Nearest-neighbour x[B, C, *S] -> [B, C, *(S * factor)]."""
        b, c, *size = x.shape
        shape = Resample("up", b, c, tuple(size), factor)
        return self.add(name, shape, (x,), (b, c, *shape.out_size))

    def downsample(self, name: str, x: Tensor, factor: int = 2) -> Tensor:
        """Average pooling x[B, C, *S] -> [B, C, *(S / factor)]."""
        b, c, *size = x.shape
        shape = Resample("down", b, c, tuple(size), factor)
        return self.add(name, shape, (x,), (b, c, *shape.out_size))

    def embedding(self, name: str, ids: Tensor, vocab: int, dim: int) -> Tensor:
        """ids[B, L] -> [B, L, dim]."""
        return self.add(name, Embedding(ids.numel, vocab, dim), (ids,), (*ids.shape, dim))

    def rearrange(self, name: str, x: Tensor, *shape: int) -> Tensor:
        """A permutation that must be made contiguous: one copy of x, viewed as `shape`."""
        return self.elementwise(name, "copy", x).view(*shape)

    def collective(self, name: str, op: str, x: Tensor, ranks: int, dim: int = 0, cross_node: bool = False) -> Tensor:
        """An NCCL collective over `ranks` GPUs on this rank's tensor x; returns this rank's result.

        all_gather concatenates along `dim` (x[.., n, ..] -> [.., ranks*n, ..]),
        reduce_scatter splits along it (x[.., ranks*n, ..] -> [.., n, ..]);
        all_reduce, all_to_all and send_recv keep x's shape. The shape's message
        is the whole buffer as NCCL counts it (see `Collective`).
        """
        out = list(x.shape)
        if op == "all_gather":
            out[dim] *= ranks
        elif op == "reduce_scatter":
            if out[dim] % ranks:
                raise ValueError(f"{name}: dim {dim} of {x.shape} does not split over {ranks} ranks")
            out[dim] //= ranks
        message = prod(out) if op == "all_gather" else x.numel
        return self.add(name, Collective(op, message, ranks, cross_node), (x,), tuple(out))
