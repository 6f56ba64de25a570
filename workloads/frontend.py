"""Lower any PyTorch module into the emulator's IR, on the meta device (no weights, no memory).

`lower_module(module, *inputs)` runs the module once under
`torch.inference_mode()` (so scaled-dot-product attention stays one op) inside
a TorchDispatchMode that sees every aten op after autograd's decompositions.
Each op that moves or computes data becomes an `Op` of our shapes, named
after the module path that ran it (`down_blocks.1.attentions.0...`); views move
no data and pass their producer on; ops that create tensors from nothing
(arange, zeros) and comparisons computing masks are dropped. Data-dependency edges follow the tensors: every
recorded op depends on the recorded ops that produced its inputs. Linear
layers are told from activation products by their operand: a matrix product
with a parameter (or a view of one) is a Linear, otherwise a Matmul.

Sizes come from the tensors the op really produced: a convolution's output
size is read off its output (strides per dimension, padding done by a
separate `pad` op, a causal video VAE's padded input), not assumed 'same'.
Attention is causal when the call says so (is_causal) or passes a full
[.., L, kv] mask computed from a triangular one: tril/triu, or a comparison
of query positions [.., L, 1] with key positions [.., 1, kv] (how
transformers builds causal masks), tracked through every op that reads it. A
mask's values cannot be read on fake tensors, so provenance and shape decide:
a key-padding mask, broadcast over the queries ([B, 1, 1, N], HunyuanVideo's
blocks) or squared (padding & padding^T, its token refiner), leaves the
attention full.

Parameters are counted once per graph: an op whose parameters (by tensor
identity) an earlier op already read is a reuse -- a VAE decoding frame by
frame or tile by tile calls the same weights many times -- and adds nothing
to the graph's `params` or `weight_bytes`, while still reading the weights in
its bytes (memory traffic per call).

Torch is imported only here, and only when used.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from functools import cached_property
from math import prod

import networkx as nx

from emulator.graph import OpGraph, Totals
from emulator.ops import CATEGORIES, Op
from emulator.shapes import (
    Attention,
    Conv,
    Elementwise,
    Embedding,
    Linear,
    Matmul,
    Norm,
    Resample,
    Softmax,
)

DTYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}
VIEWS = {"view", "_unsafe_view", "reshape", "_reshape_alias", "permute", "transpose", "t", "expand", "unsqueeze",
         "squeeze", "slice", "select", "split", "split_with_sizes", "chunk", "unbind", "as_strided", "alias",
         "detach", "lift_fresh", "narrow", "unflatten", "flatten", "view_as", "expand_as", "numpy_T", "dropout",
         "feature_dropout", "meshgrid", "movedim", "swapaxes", "view_as_real", "view_as_complex"}
MAYBE_COPIES = {"to", "contiguous", "type_as", "float", "half"}  # a copy when they return a new tensor
GATHERS = {"index", "gather", "repeat_interleave"}  # copies that read scattered elements, never a stream
CREATES = {"arange", "zeros", "ones", "full", "empty", "empty_like", "zeros_like", "ones_like", "full_like",
           "scalar_tensor", "new_zeros", "new_ones", "new_empty", "new_full", "randn", "rand", "randn_like",
           "empty_strided", "tril", "triu", "_local_scalar_dense", "fill", "linspace"}
COMPARES = {"le", "lt", "ge", "gt"}
ELEMENTWISE = {"add": "add", "sub": "add", "rsub": "add", "mul": "mul", "div": "mul", "silu": "silu",
               "gelu": "gelu", "sigmoid": "sigmoid", "tanh": "sigmoid", "exp": "unary", "rsqrt": "unary",
               "sqrt": "unary", "pow": "unary", "neg": "unary", "cos": "unary", "sin": "unary", "abs": "unary",
               "clamp": "unary", "clamp_min": "unary", "clamp_max": "unary", "clip": "unary", "where": "unary",
               "masked_fill": "unary", "reciprocal": "unary", "erf": "unary", "outer": "mul",
               "mean": "reduce", "sum": "reduce", "amax": "reduce", "linalg_vector_norm": "reduce",
               "norm": "reduce", "_to_copy": "copy", "clone": "copy", "copy": "copy", "cat": "copy",
               "concat": "copy", "concatenate": "copy", "stack": "copy", "index": "copy", "gather": "copy", "pad": "copy", "constant_pad_nd": "copy",
               "repeat": "copy", "repeat_interleave": "copy", "pixel_shuffle": "copy", "pixel_unshuffle": "copy"}


def _flat(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v


def _ints(value, rank: int) -> tuple[int, ...]:
    """A conv's stride as one int per spatial dim."""
    return tuple(value) if isinstance(value, (list, tuple)) else (int(value),) * rank


def conv_shape(x, w, out, stride, groups: int, bias: bool, transposed: bool = False) -> Conv:
    """x [B, C_in, *in], w [C_out, C_in/g, *k], out [B, C_out, *o]: a Conv with the real output size.

    FLOPs are exact: 2 B C_out prod(o) (C_in/g) prod(k). The input size is the real one when the Conv's
    one stride maps it onto `o` ('same' padding); otherwise (a pre-padded or strided-per-dim input)
    the size is o * stride, which reads the output's footprint instead of the halo.
    """
    if transposed:  # w [C_in, C_out/g, *k]: the adjoint of a conv from out to x, the same work
        x, out = out, x
    kernel, size, o = tuple(w.shape[2:]), tuple(x.shape[2:]), tuple(out.shape[2:])
    strides = _ints(stride, len(kernel))
    batch = x.shape[0]
    # A spatial conv applied to every frame ([B, C, F, H, W], kernel (1, k, k)) is a batched conv2d, as
    # PyTorch runs it (a (k, 1, 1) temporal conv stays a conv3d: its kernel differs).
    if len(kernel) == 3 and kernel[0] == 1 and strides[0] == 1 and size[0] == o[0]:
        batch, kernel, size, o, strides = batch * o[0], kernel[1:], size[1:], o[1:], strides[1:]
    step = strides[0] if len(set(strides)) == 1 else 1
    if any(-(-s // step) != n for s, n in zip(size, o)):
        size = tuple(n * step for n in o)
    return Conv(batch, w.shape[1] * groups, w.shape[0], size, kernel, step, groups, bias)


def einsum_shape(equation: str, a, b, a_is_param: bool, b_is_param: bool):
    """A two-operand einsum as the matrix product it is: indices in both operands and the output are
    the batch, those only in the operands are contracted (k), the rest are m (a's) and n (b's)."""
    lhs, out = (equation.replace(" ", "").split("->") + [None])[:2]
    ia, ib = lhs.split(",")
    if "." in equation or len(ia) != a.dim() or len(ib) != b.dim():
        return None  # an ellipsis: no index sizes to read
    sizes = dict(zip(ia, a.shape)) | dict(zip(ib, b.shape))
    if out is None:  # implicit output: the indices seen once, in order
        out = "".join(sorted(i for i in sizes if (ia + ib).count(i) == 1))
    size = lambda idx: prod(sizes[i] for i in idx)
    batch = [i for i in sizes if i in ia and i in ib and i in out]
    k = [i for i in sizes if i not in out]
    m = [i for i in ia if i in out and i not in ib]
    n = [i for i in ib if i in out and i not in ia]
    if not k:  # nothing contracted: an outer / broadcast product
        return Elementwise("mul", max(size(out), 1))
    if b_is_param and not batch:
        return Linear(size(m), size(k), size(n), bias=False)
    if a_is_param and not batch:
        return Linear(size(n), size(k), size(m), bias=False)
    return Matmul(size(batch), size(m), size(k), size(n))


def attention_shape(q, k, mask, causal: bool, k_distinct: int | None = None) -> Attention:
    """q [B, H, Lq, D], k [B, Hkv, Lkv, D], mask broadcastable to [B, H, Lq, Lkv] or None; `causal`: the
    call said is_causal or its mask was computed from a triangular one. Grouped-query attention shows up
    two ways: fewer K/V heads than query heads (SDPA's enable_gqa), or K broadcast to H heads from fewer
    (transformers' repeat_kv, an expand and a reshape, when it passes a mask): k_distinct, the elements
    of k before the expand, gives kv_heads = H x k_distinct / k.numel(). The reshape is recorded as a
    view, so the graph costs what SDPA with enable_gqa does (transformers' call without a padding mask)."""
    *lead, q_len, head_dim = q.shape
    kv_len = k.shape[-2]
    heads = lead[-1] if lead else 1
    kv_heads = k.shape[-3] if k.dim() >= 3 and lead else heads
    if k_distinct and k_distinct < k.numel() and (heads * k_distinct) % k.numel() == 0:
        kv_heads = heads * k_distinct // k.numel()
    batch = prod(lead[:-1]) if len(lead) > 1 else 1
    # A mask with one query row ([B, 1, 1, L]) only pads keys; a full [.., L, L] one is causal only when
    # built from positions (values cannot be read on fake tensors): HunyuanVideo's refiner passes a
    # square key-padding mask (padding & padding^T), which masks nothing causally.
    full_mask = mask is None or (mask.dim() >= 2 and mask.shape[-2] == q_len)
    causal = causal and full_mask and q_len <= kv_len
    variant = "causal" if causal else "self" if q_len == kv_len else "cross"
    return Attention(batch, heads, q_len, kv_len, head_dim, variant, causal, kv_heads=kv_heads)


def resample_shape(x, out, direction: str):
    """x [B, C, *in] -> out [B, C, *o] by one factor; leading dims kept as they are fold into the batch."""
    size, o = list(x.shape[2:]), list(out.shape[2:])
    batch = x.shape[0]
    while len(size) > 1 and size[0] == o[0]:
        batch, size, o = batch * size[0], size[1:], o[1:]
    ratios = {(n // s if direction == "up" else s // n) for s, n in zip(size, o)}
    if len(ratios) != 1 or min(ratios) < 1:
        return None  # factors differ per dim: a copy of the output
    return Resample(direction, batch, x.shape[1], tuple(size), ratios.pop())


class Recorder:
    """Collects ops and their producers while a module runs (a TorchDispatchMode, built lazily)."""

    def __init__(self, module, torch):
        from torch.utils.weak import WeakIdKeyDictionary

        self.torch = torch
        self.ops: list[Op] = []
        self.edges: list[tuple[str, str]] = []
        self.producers = WeakIdKeyDictionary()  # tensor -> frozenset of op names that produced it
        self.params = WeakIdKeyDictionary()  # parameters and buffers, and views of them -> index of the tensor
        for i, t in enumerate(list(module.parameters()) + list(module.buffers())):
            self.params[t] = i
        self.triangular = WeakIdKeyDictionary()  # tensors derived from a causal (position vs position) mask
        self.broadcast = WeakIdKeyDictionary()  # views of an expanded tensor -> its distinct elements
        self.read: set[int] = set()  # parameters some recorded op has read
        self.reused: set[str] = set()  # ops whose weights earlier ops already read
        self.path: list[str] = [""]
        self.counts: Counter = Counter()
        self.unmapped: Counter = Counter()
        names = {m: n for n, m in module.named_modules()}
        self.hooks = []
        for m, n in names.items():
            self.hooks.append(m.register_forward_pre_hook(lambda mod, args, n=n: self.enter(n)))
            self.hooks.append(m.register_forward_hook(lambda mod, args, out: self.leave()))

    def enter(self, name: str) -> None:  # hooks must return None, or they replace inputs and outputs
        self.path.append(name)

    def leave(self) -> None:
        self.path.pop()

    def tensors(self, values) -> list:
        return [v for v in _flat(values) if isinstance(v, self.torch.Tensor)]

    def record(self, func, args, kwargs, out) -> None:
        name = func._schema.name.split("::")[-1]
        base = name.rstrip("_")
        inputs = self.tensors(args) + self.tensors(kwargs.values())
        outputs = self.tensors(out if isinstance(out, (list, tuple)) else [out])
        sources = frozenset().union(*(self.producers.get(t, frozenset()) for t in inputs))
        weights = {self.params[t] for t in inputs if t in self.params}
        self.mark_triangular(base, inputs, outputs)
        if base in VIEWS or (base in MAYBE_COPIES and any(o is t for o in outputs for t in inputs)):
            self.mark_broadcast(base, inputs, outputs)
            for o in outputs:
                self.producers[o] = sources
                if weights:
                    self.params[o] = min(weights)
            return
        if base in CREATES or not outputs:
            return
        shape = self.shape(base, args, kwargs, inputs, outputs)
        if shape is None:
            self.unmapped[base] += 1
            for o in outputs:
                self.producers[o] = sources
            return
        path = self.path[-1] or "module"
        self.counts[(path, base)] += 1
        op_name = f"{path}.{base}.{self.counts[(path, base)] - 1}"
        dtype = DTYPES.get(str(outputs[0].dtype).removeprefix("torch."), "fp32")
        self.ops.append(Op(op_name, shape, dtype))
        if shape.weight_elements and weights and weights <= self.read:
            self.reused.add(op_name)  # the same weights again (a frame, a tile): counted once per graph
        self.read |= weights
        self.edges += [(src, op_name) for src in sorted(sources)]
        for o in outputs:
            self.producers[o] = frozenset([op_name])

    def mark_broadcast(self, base: str, inputs, outputs) -> None:
        """Remember, through views, the distinct elements of an expanded tensor (repeat_kv's K and V)."""
        distinct = next((self.broadcast[t] for t in inputs if t in self.broadcast), None)
        if base == "expand" and inputs and distinct is None:
            distinct = inputs[0].numel()
        for o in outputs:
            if distinct is not None and distinct < o.numel():
                self.broadcast[o] = distinct

    def mark_triangular(self, base: str, inputs, outputs) -> None:
        """Tag the outputs of tril/triu, of a comparison of query positions [.., L, 1] with key positions
        [.., 1, L] (how transformers builds a causal mask; or their meshgrid, HunyuanVideo's VAE's
        frame-causal mask), and of anything computed from such a tensor."""
        tagged = any(t in self.triangular for t in inputs) or base in ("tril", "triu")
        if base in COMPARES and len(inputs) == 2 and min(t.dim() for t in inputs) >= 2:
            a, b = inputs
            flat = lambda t, d: t.shape[d] == 1 or t.stride(d) == 0  # broadcast along d (meshgrid's expand)
            tagged |= (flat(a, -1) and flat(b, -2)) or (flat(a, -2) and flat(b, -1))
        if tagged:
            for o in outputs:
                self.triangular[o] = True

    def shape(self, base: str, args, kwargs, inputs, outputs):
        out = outputs[0]
        arg = lambda i, key, default=None: kwargs.get(key, args[i] if len(args) > i else default)
        if base == "convolution":  # (input, weight, bias, stride, padding, dilation, transposed, _, groups)
            return conv_shape(args[0], args[1], out, arg(3, "stride", 1), arg(8, "groups", 1),
                              arg(2, "bias") is not None, bool(arg(6, "transposed", False)))
        if base in ("conv1d", "conv2d", "conv3d"):  # (input, weight, bias, stride, padding, dilation, groups)
            return conv_shape(args[0], args[1], out, arg(3, "stride", 1), arg(6, "groups", 1),
                              arg(2, "bias") is not None)
        if base.startswith("conv_transpose"):  # (input, weight, bias, stride, padding, output_padding, groups)
            return conv_shape(args[0], args[1], out, arg(3, "stride", 1), arg(6, "groups", 1),
                              arg(2, "bias") is not None, transposed=True)
        if base in ("linear", "matmul", "addmm", "mm", "bmm", "baddbmm", "einsum"):
            return self.product_shape(base, args, arg, out)
        if "scaled_dot_product" in base:
            mask = arg(3, "attn_mask")
            causal = bool(arg(5, "is_causal", False)) or (mask is not None and mask in self.triangular)
            return attention_shape(args[0], args[1], mask, causal, self.broadcast.get(args[1]))
        if base in ("native_group_norm", "group_norm"):
            x = args[0]
            groups = args[7] if base == "native_group_norm" else arg(1, "num_groups")
            return Norm("group", x.numel(), x.shape[1], groups, x.shape[0])
        if base in ("native_layer_norm", "layer_norm", "rms_norm", "_fused_rms_norm"):
            x, normalized = args[0], args[1]
            return Norm("layer" if "layer" in base else "rms", x.numel(), prod(normalized))
        if base in ("softmax", "_softmax"):  # under inference_mode softmax arrives undecomposed
            x = args[0]
            return Softmax(x.numel() // x.shape[-1], x.shape[-1])
        if base == "embedding":
            w, idx = args[0], args[1]
            return Embedding(idx.numel(), w.shape[0], w.shape[1])
        if "upsample_nearest" in base or base.startswith("avg_pool"):  # _upsample_nearest_exact2d too
            shape = resample_shape(args[0], out, "up" if "upsample" in base else "down")
            if shape is not None:
                return shape
            return Elementwise("copy", out.numel())
        return self.elementwise_shape(base, inputs, out)

    def product_shape(self, base: str, args, arg, out):
        """Matrix products: a Linear when one operand is a parameter (or a view of one), else a Matmul."""
        if base == "linear":
            x, w = args[0], args[1]
            return Linear(x.numel() // x.shape[-1], w.shape[1], w.shape[0], bias=arg(2, "bias") is not None)
        if base == "einsum":
            ops = self.tensors(args[1])
            if len(ops) == 1:  # a permutation ("nhwpqc->nchpwq", an unpatchify) or a reduction
                kind = "copy" if out.numel() == ops[0].numel() else "reduce"
                return Elementwise(kind, max(ops[0].numel(), 1))
            if len(ops) != 2:
                return None
            return einsum_shape(args[0], *ops, ops[0] in self.params, ops[1] in self.params)
        if base == "matmul":
            a, b = args[0], args[1]
            if b in self.params and b.dim() == 2:
                return Linear(a.numel() // a.shape[-1], b.shape[0], b.shape[1], bias=False)
            return Matmul(prod(out.shape[:-2]) if out.dim() > 2 else 1, a.shape[-2], a.shape[-1], b.shape[-1])
        if base in ("addmm", "mm"):
            a, b = (args[1], args[2]) if base == "addmm" else (args[0], args[1])
            if a in self.params or b in self.params:
                return Linear(a.shape[0], a.shape[1], b.shape[1], bias=base == "addmm")
            return Matmul(1, a.shape[0], a.shape[1], b.shape[1])
        a, b = (args[1], args[2]) if base == "baddbmm" else (args[0], args[1])
        return Matmul(a.shape[0], a.shape[1], a.shape[2], b.shape[2])

    def elementwise_shape(self, base: str, inputs, out):
        kind = "copy" if base in MAYBE_COPIES else ELEMENTWISE.get(base)
        if kind is None or out.numel() == 0:
            return None
        if kind == "copy" and base not in GATHERS and all(t.is_contiguous() for t in inputs):
            # Streaming contiguous memory (a KV-cache torch.cat) runs at copy bandwidth; a transpose
            # made contiguous reads with strides and ran 3-5x slower per byte on the development CPU.
            kind = "memcpy"
        elements = max(t.numel() for t in inputs) if kind == "reduce" else out.numel()
        full = sum(t.numel() == out.numel() for t in inputs if t not in self.params) if kind != "reduce" else 1
        return Elementwise(kind, elements, max(full, 1))

    def graph(self) -> "LoweredGraph":
        structure = nx.DiGraph()
        structure.add_nodes_from(op.name for op in self.ops)
        structure.add_edges_from(self.edges)
        return LoweredGraph(self.ops, nx.freeze(structure), frozenset(self.reused))

    def close(self) -> None:
        for h in self.hooks:
            h.remove()


class LoweredGraph(OpGraph):
    """An OpGraph whose `params` and `weight_bytes` count each parameter once: ops in `reused` read
    weights an earlier op already read (their bytes still count as memory traffic)."""

    def __init__(self, ops, structure, reused: frozenset = frozenset(), validate: bool = True):
        super().__init__(ops, structure, validate)
        self.reused = reused

    def once(self, ops) -> Totals:
        ops = list(ops)
        again = Totals.of(op for op in ops if op.name in self.reused)
        total = Totals.of(ops)
        return replace(total, params=total.params - again.params, weight_bytes=total.weight_bytes - again.weight_bytes)

    @cached_property
    def totals(self) -> Totals:
        return self.once(self.ops)

    @cached_property
    def by_category(self) -> dict[str, Totals]:
        groups: dict[str, list[Op]] = {}
        for op in self.ops:
            groups.setdefault(op.category, []).append(op)
        return {c: self.once(groups[c]) for c in CATEGORIES if c in groups}

def lower_module(module, *inputs, **kwargs) -> OpGraph:
    """The OpGraph of one forward call of `module` on `inputs` (meta tensors; kwargs passed on)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    recorder = Recorder(module, torch)

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            recorder.record(func, args, kwargs, out)
            return out

    try:
        with torch.inference_mode(), Mode():
            module(*inputs, **kwargs)
    finally:
        recorder.close()
    graph = recorder.graph()
    graph.unmapped = dict(recorder.unmapped)  # aten ops seen but not costed, for diagnosis
    return graph
