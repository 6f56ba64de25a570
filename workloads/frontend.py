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

Torch is imported only here, and only when used.
"""

from __future__ import annotations

from collections import Counter
from math import prod

import networkx as nx

from emulator.graph import OpGraph
from emulator.ops import Op
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
         "feature_dropout"}
MAYBE_COPIES = {"to", "contiguous", "type_as", "float", "half"}  # a copy when they return a new tensor
GATHERS = {"index", "gather"}  # copies that read scattered elements, never a stream
CREATES = {"arange", "zeros", "ones", "full", "empty", "empty_like", "zeros_like", "ones_like", "full_like",
           "scalar_tensor", "new_zeros", "new_ones", "new_empty", "new_full", "randn", "rand", "randn_like",
           "empty_strided", "tril", "triu", "_local_scalar_dense"}
ELEMENTWISE = {"add": "add", "sub": "add", "rsub": "add", "mul": "mul", "div": "mul", "silu": "silu",
               "gelu": "gelu", "sigmoid": "sigmoid", "tanh": "sigmoid", "exp": "unary", "rsqrt": "unary",
               "sqrt": "unary", "pow": "unary", "neg": "unary", "cos": "unary", "sin": "unary", "abs": "unary",
               "clamp": "unary", "where": "unary", "masked_fill": "unary", "reciprocal": "unary", "erf": "unary",
               "mean": "reduce", "sum": "reduce", "amax": "reduce", "_to_copy": "copy", "clone": "copy",
               "copy": "copy", "cat": "copy", "stack": "copy", "index": "copy", "gather": "copy"}


def _flat(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v


class Recorder:
    """Collects ops and their producers while a module runs (a TorchDispatchMode, built lazily)."""

    def __init__(self, module, torch):
        from torch.utils.weak import WeakIdKeyDictionary

        self.torch = torch
        self.ops: list[Op] = []
        self.edges: list[tuple[str, str]] = []
        self.producers = WeakIdKeyDictionary()  # tensor -> frozenset of op names that produced it
        self.params = WeakIdKeyDictionary()  # parameters and buffers, and views of them
        for t in list(module.parameters()) + list(module.buffers()):
            self.params[t] = True
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
        if base in VIEWS or (base in MAYBE_COPIES and any(o is t for o in outputs for t in inputs)):
            for o in outputs:
                self.producers[o] = sources
                if any(t in self.params for t in inputs):
                    self.params[o] = True
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
        self.edges += [(src, op_name) for src in sorted(sources)]
        for o in outputs:
            self.producers[o] = frozenset([op_name])

    def shape(self, base: str, args, kwargs, inputs, outputs):
        out = outputs[0]
        arg = lambda i, key, default=None: kwargs.get(key, args[i] if len(args) > i else default)
        if base == "convolution" or base in ("conv1d", "conv2d", "conv3d"):
            x, w = args[0], args[1]
            stride = arg(3, "stride", 1)
            stride = stride[0] if isinstance(stride, (list, tuple)) else stride
            groups = arg(8, "groups", 1) if base == "convolution" else arg(6, "groups", 1)
            kernel, size = tuple(w.shape[2:]), tuple(x.shape[2:])
            # A temporal conv over [B, C, F, H, W] with a (k, 1, 1) kernel stays a conv3d: PyTorch runs it
            # unlike a conv1d over [B*H*W, C, F] of the same work (2x faster on the development CPU).
            if len(kernel) == 3 and kernel[0] == 1:  # a spatial conv applied to every frame
                return Conv(x.shape[0] * size[0], x.shape[1], w.shape[0], size[1:], kernel[1:], stride, groups,
                            arg(2, "bias") is not None)
            return Conv(x.shape[0], x.shape[1], w.shape[0], tuple(x.shape[2:]), tuple(w.shape[2:]), stride,
                        groups, arg(2, "bias") is not None)
        if base == "linear":
            x, w = args[0], args[1]
            return Linear(x.numel() // x.shape[-1], w.shape[1], w.shape[0], bias=arg(2, "bias") is not None)
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
        if base in ("bmm", "baddbmm"):
            a, b = (args[1], args[2]) if base == "baddbmm" else (args[0], args[1])
            return Matmul(a.shape[0], a.shape[1], a.shape[2], b.shape[2])
        if "scaled_dot_product" in base:
            q, k = args[0], args[1]
            *lead, q_len, head_dim = q.shape
            kv_len = k.shape[-2]
            heads = lead[-1] if lead else 1
            batch = prod(lead[:-1]) if len(lead) > 1 else 1
            # A decoder passes either is_causal or its own mask; a mask over a square q x kv (the prompt
            # attending to itself) is taken as causal: a mask's values cannot be read on the meta device.
            mask = arg(3, "attn_mask")
            causal = bool(arg(5, "is_causal", False)) or (mask is not None and q_len == kv_len > 1)
            variant = "causal" if causal else "self" if q_len == kv_len else "cross"
            return Attention(batch, heads, q_len, kv_len, head_dim, variant, causal)
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
        if base.startswith("upsample_nearest"):
            x = args[0]
            return Resample("up", x.shape[0], x.shape[1], tuple(x.shape[2:]), out.shape[-1] // x.shape[-1])
        if base.startswith("avg_pool"):
            x = args[0]
            return Resample("down", x.shape[0], x.shape[1], tuple(x.shape[2:]), x.shape[-1] // out.shape[-1])
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

    def graph(self) -> OpGraph:
        structure = nx.DiGraph()
        structure.add_nodes_from(op.name for op in self.ops)
        structure.add_edges_from(self.edges)
        return OpGraph(self.ops, nx.freeze(structure))

    def close(self) -> None:
        for h in self.hooks:
            h.remove()


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
