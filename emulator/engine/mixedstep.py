"""One forward pass over a mixed batch of prefill chunks and decode tokens, costed from the model's own graphs.

An iteration-level scheduler runs, in one forward pass, the next token of every
decoding request and prefill chunks of others. The pass is costed from the
batch's shapes, never padded:

- token-wise ops (embedding, norms, linears, RoPE, elementwise) at the step's
  total token count T: the ops of the model's decode graph at batch T, whose
  rows are T tokens exactly as in a prefill of T tokens;
- the head (final norm, LM head, sampling) for the S requests whose last
  token needs logits (decoders, and prefills whose final chunk this is): the
  decode graph's head ops at batch S; none when S is 0;
- attention per request at its own (query tokens q, KV length kv): each
  attention op of the graph with batch 1, q_len q and kv_len kv, its heads and
  K/V heads (grouped-query attention) unchanged. With `batched_decode`, the
  requests that run one query token (decodes) share one attention op per
  layer instead, at batch n and their mean KV length (rounded up): the same
  query-key pairs and K/V reads give or take n - 1 positions, as serving
  engines run them in one variable-length kernel per layer. Costed one by
  one, each batch-1 decode attention would pay the kernel's fixed cost (on
  the H100 profile 9.6 us alone against 1.9 us per request at batch 64, KV 700).

Which ops are the head is read from the graphs: the ops whose shapes are the
same in a prefill of a P-token prompt (P >= 2) and in a decode step of one
token; the others, attention aside, are token-wise, and the prefill's must
equal the decode graph's at batch P op for op (checked once), so a lone
prefill chunk of a whole prompt costs exactly the prefill stage's call.

The step's time is the host/device timeline (`emulator.cost.timeline`) of its
ops in graph order, each attention op expanded into its requests' attention
ops one after another, under the runtime's dispatch (`Runtime.dispatched`):
with CUDA graphs one launch plus the kernels back to back, in eager mode each
op waits for the host. Kernel times are memoized per T (token-wise part), per
S (head) and per (attention op, q, kv), so a step costs a few array
concatenations.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, replace

import numpy as np

from emulator.cost.kernels import kernel_count, work
from emulator.cost.timeline import finish_time
from emulator.engine.stepcost import StepCost, StepCosts
from emulator.errors import UserError
from emulator.ops import Op
from emulator.pipeline import Stage
from emulator.shapes import Attention

TOKEN, HEAD, ATTENTION = 0, 1, 2  # what an op of the graph is to a mixed step


@dataclass(frozen=True)
class Part:
    """Per-op arrays [ops of the graph] of the token-wise or head ops at one row count (0 elsewhere)."""

    kernel_s: np.ndarray  # kernel seconds
    extra_kernels: np.ndarray  # kernels each op launches beyond its first
    flops: float
    bytes: float
    fallback_ops: int


class MixedStep:
    """Costs mixed prefill/decode steps of one model (its prefill and decode stages) under a StepCosts'
    cost model and runtime."""

    def __init__(self, prefill: Stage, decode: Stage, costs: StepCosts):
        self.decode, self.model, self.runtime = decode, costs.model, costs.runtime
        self.attention = self.model.attention
        self.synchronous = self.model.device.synchronous
        one = decode.graph(1)
        self.kind = self.classify(prefill, decode)
        self.slots = [i for i, k in enumerate(self.kind) if k == ATTENTION]  # attention op indices
        self.slot_ops = [one.ops[i] for i in self.slots]
        shapes = {}  # attention ops of equal shape and dtype (every layer of LLaMA) are costed once per step
        self.slot_kind = [shapes.setdefault((op.shape, op.dtype), len(shapes)) for op in self.slot_ops]
        self.kind_slot = {k: n for n, k in reversed(list(enumerate(self.slot_kind)))}  # a slot of each kind
        bounds = [-1, *self.slots, len(self.kind)]
        self.runs = [(a + 1, b) for a, b in zip(bounds, bounds[1:])]  # non-attention ops between slots
        self.head_mask = self.kind == HEAD
        self.kv_bytes_per_token = decode.graph(1, 1).kv_cache_bytes - one.kv_cache_bytes  # K and V, all layers
        self._tokens: dict[int, Part] = {}
        self._head: dict[int, Part] = {}
        self._attention: dict[tuple[int, int, int, int], tuple[float, int, float, float, bool]] = {}
        self._fallback: dict[Op, bool] = {}

    def classify(self, prefill: Stage, decode: Stage) -> np.ndarray:
        """Per op of the decode graph: TOKEN, HEAD or ATTENTION (see the module docstring)."""
        pre, one = prefill.graph(1), decode.graph(1)
        prompt = max((op.shape.q_len for op in pre.attention_ops), default=0)
        if prompt < 2 or len(pre.ops) != len(one.ops):
            raise UserError(f"chunked-prefill: the {decode.description} cannot be split into token-wise ops, head "
                            f"and attention (its prefill needs a prompt of at least 2 tokens and the same ops)")
        at_prompt = decode.build(prompt)
        kind = np.empty(len(one.ops), dtype=int)
        for i, (p, d, t) in enumerate(zip(pre.ops, one.ops, at_prompt.ops)):
            if isinstance(d.shape, Attention):
                kind[i] = ATTENTION
            elif p.shape == d.shape:
                kind[i] = HEAD
            elif p.shape == t.shape:
                kind[i] = TOKEN
            else:
                raise UserError(f"chunked-prefill: op {d.name} of the {decode.description} is neither per token "
                                f"nor per sequence ({p.shape} in the prefill, {t.shape} at batch {prompt})")
        return kind

    # -- memoized parts -------------------------------------------------------------------------------

    def tokens_part(self, tokens: int) -> Part:
        """Token-wise ops at `tokens` rows."""
        if tokens not in self._tokens:
            self._tokens[tokens] = self.part(tokens, self.kind == TOKEN)
        return self._tokens[tokens]

    def head_part(self, sequences: int) -> Part:
        """Head ops for `sequences` rows of logits."""
        if sequences not in self._head:
            self._head[sequences] = self.part(sequences, self.head_mask)
        return self._head[sequences]

    def part(self, rows: int, mask: np.ndarray) -> Part:
        graph = self.decode.build(rows)  # not memoized on the stage: only its kernel times are kept
        kernel_s, extra = np.zeros(len(mask)), np.zeros(len(mask))
        flops = moved = 0.0
        fallback = 0
        for i in np.flatnonzero(mask):
            op = graph.ops[i]
            kernel_s[i] = self.model.op_time(op)
            extra[i] = kernel_count(op, self.attention) - 1
            f, b = work(op, self.attention)
            flops += f
            moved += b
            fallback += self.is_fallback(op)
        return Part(kernel_s, extra, flops, moved, fallback)

    def is_fallback(self, op: Op) -> bool:
        if not self.model.calibrated:
            return False
        if op not in self._fallback:
            self._fallback[op] = not self.model.covers(op)
        return self._fallback[op]

    def attention_op(self, slot: int, batch: int, q: int, kv: int) -> Op:
        """Attention op number `slot` of the graph for `batch` sequences of q query tokens over kv positions."""
        op = self.slot_ops[slot]
        return Op(op.name, replace(op.shape, batch=batch, q_len=q, kv_len=kv), op.dtype)

    def attention_cost(self, slot: int, batch: int, q: int, kv: int) -> tuple[float, int, float, float, bool]:
        """(kernel seconds, extra kernels, FLOPs, bytes, fallback) of one attention op in a slot."""
        key = (self.slot_kind[slot], batch, q, kv)
        found = self._attention.get(key)
        if found is None:
            op = self.attention_op(slot, batch, q, kv)
            f, b = work(op, self.attention)
            found = self._attention[key] = (self.model.op_time(op), kernel_count(op, self.attention) - 1, f, b,
                                            self.is_fallback(op))
        return found

    # -- a step ---------------------------------------------------------------------------------------

    def cost(self, tokens: int, logits: int, attention: list[tuple[int, int]], batched_decode: bool = False
             ) -> StepCost:
        """One forward pass: `tokens` query tokens in all, `logits` rows of logits, per request (q, kv);
        `batched_decode`: one attention op per layer for the requests of one query token (see the module)."""
        body = self.tokens_part(tokens)
        kernel, extra = body.kernel_s, body.extra_kernels
        flops, moved, fallback = body.flops, body.bytes, body.fallback_ops
        present = self.kind == TOKEN
        if logits:
            head = self.head_part(logits)
            kernel, extra = kernel + head.kernel_s, extra + head.extra_kernels
            flops, moved, fallback = flops + head.flops, moved + head.bytes, fallback + head.fallback_ops
            present = present | self.head_mask
        ops = attention_ops(attention, batched_decode)  # (batch, q, kv) per attention op of a layer
        per_kind = {}  # attention kind -> (kernel seconds [ops], extra kernels [ops], FLOPs, bytes, fallbacks)
        for k, n in self.kind_slot.items():
            per = [self.attention_cost(n, b, q, kv) for b, q, kv in ops]
            per_kind[k] = (np.array([p[0] for p in per]), np.array([p[1] for p in per], dtype=float),
                           sum(p[2] for p in per), sum(p[3] for p in per), sum(p[4] for p in per))
        pieces, extras = [], []
        for n, (start, end) in enumerate(self.runs):
            keep = present[start:end]
            pieces.append(kernel[start:end][keep])
            extras.append(extra[start:end][keep])
            if n < len(self.slots):
                a_s, a_extra, f, b, fb = per_kind[self.slot_kind[n]]
                pieces.append(a_s)
                extras.append(a_extra)
                flops, moved, fallback = flops + f, moved + b, fallback + fb
        kernel_s = np.concatenate(pieces)
        dispatched = self.runtime.dispatched(self.model, np.concatenate(extras))
        return StepCost(finish_time(kernel_s, dispatched, self.synchronous), float(kernel_s.sum()), flops, moved,
                        fallback)

    def activation_bytes(self, tokens: int) -> int:
        """Activation peak of a step of `tokens` tokens: the decode graph's at that batch (fused attention
        holds no similarity matrix)."""
        return self.decode.build(tokens).peak_activation_bytes(self.attention)


def attention_ops(attention: list[tuple[int, int]], batched_decode: bool) -> list[tuple[int, int, int]]:
    """(batch, q, kv) of each attention op of a layer: one per request, or with `batched_decode` one per request
    of several query tokens and one for all requests of one, at their mean KV length rounded up."""
    if not batched_decode:
        return [(1, q, kv) for q, kv in attention]
    ops = [(1, q, kv) for q, kv in attention if q > 1]
    ones = [kv for q, kv in attention if q == 1]
    if ones:
        ops.append((len(ones), 1, -(-sum(ones) // len(ones))))
    return ops


_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # StepCosts -> {id(decode stage): MixedStep}


def mixed_step(costs: StepCosts, prefill: Stage, decode: Stage) -> MixedStep:
    """The MixedStep of a model under `costs`, made once per decode stage it is costed as (its twin)."""
    decode = costs.twins.get(id(decode), (decode,))[0]
    per = _STEPS.setdefault(costs, {})
    key = id(decode)
    if key not in per:
        per[key] = MixedStep(prefill, decode, costs)
    return per[key]
