"""chunked-prefill: iteration-level LLM scheduling with a token budget per step and a paged KV cache.

Every step is one forward pass over a mixed batch, costed from its shapes by
`emulator.engine.mixedstep` (`decode_attention: batched`, the default: the
step's decodes share one attention op per layer at their mean KV length, as
one variable-length kernel runs them; `per-request`: one op per request). The step is filled in this order (the order of
vLLM's scheduler with chunked prefill, and Sarathi-Serve's stall-free
batching): running requests first, oldest arrival first, each decoding request
taking one token and each partly prefilled one its next chunk, as much as the
budget has left; then requests swapped out to the host, oldest first, come
back; then waiting requests (new, or preempted by recompute), oldest arrival
first, take prefill chunks while the budget, `max_running` and free KV blocks
allow. A step runs one model: a device serving several LLMs runs them in turn.

KV memory is paged (`emulator.engine.kvpages`): a request holds blocks of
`block_tokens` positions for what it has in cache and takes more as it grows.
When a running request cannot get a block, the latest-arrived running request
not yet placed in the step (maybe itself) is preempted: `recompute` frees its
blocks and sends it back to waiting, to prefill its prompt and the tokens it
has generated (the last chunk emits its next token); `swap` copies its KV to
host memory over the device's PCIe link (one way: half of `pcie_GBps`), frees
its blocks, and copies it back before it runs again; both copies take device
time before the step they belong to. A step that preempted admits nobody new.
A request whose longest KV (prompt + output - 1 positions) would not fit the
empty pool is rejected on arrival, so a preempted request always comes back.

The step that completes a request's prefill emits its first token (its
prefill stage ends, its decode stage begins); every later step that includes
it emits one more.
"""

from __future__ import annotations

import heapq
from bisect import insort
from dataclasses import dataclass, field
from typing import Literal

from emulator.engine.kvpages import KVPool, Pages
from emulator.engine.mixedstep import MixedStep, mixed_step
from emulator.engine.policies.base import BatchPolicy
from emulator.engine.request import Request
from emulator.errors import UserError


@dataclass(eq=False)
class Seq:
    """One request as the scheduler sees it."""

    r: Request
    model: MixedStep
    pages: Pages
    target: int  # positions to prefill before it emits again: the prompt, or prompt + emitted after recompute
    computed: int = 0  # positions whose keys and values are in the cache
    emitted: int = 0  # output tokens so far
    running: bool = False

    @property
    def order(self) -> tuple[float, int]:
        return (self.r.arrival_s, self.r.id)


@dataclass
class Plan:
    """One step: the model, (request, query tokens) in step order, and copies to or from the host before it."""

    model: MixedStep
    items: list = field(default_factory=list)
    copy_s: float = 0.0
    copy_bytes: int = 0
    copied: list = field(default_factory=list)  # requests whose KV is copied out or in before the step


class ChunkedPrefill(BatchPolicy):
    @dataclass(frozen=True)
    class Params:
        token_budget: int = field(default=512, metadata={"min": 1})  # query tokens per step; a decode counts one
        max_running: int = field(default=256, metadata={"min": 1})  # requests holding KV blocks at once
        block_tokens: int = field(default=16, metadata={"min": 1})  # KV positions per block
        preemption: Literal["recompute", "swap"] = "recompute"  # what a preempted request does with its KV
        decode_attention: Literal["batched", "per-request"] = "batched"  # decodes' attention: one op per layer

    def __init__(self, params, device):
        super().__init__(params, device)
        self.device = device
        model = device.model
        if model.attention == "baseline":
            raise UserError("policy chunked-prefill needs a fused attention implementation (attention: flash, fa2, "
                            "...): baseline attention materializes every chunk's similarity matrix")
        self.copy_Bps = model.device.pcie_GBps / 2 * 1e9  # one way
        if params.preemption == "swap" and self.copy_Bps <= 0:
            raise UserError(f"policy chunked-prefill: preemption swap needs a PCIe link; {model.device.name} has "
                            f"pcie_GBps 0 (use preemption: recompute)")
        self.models: list[MixedStep] = []  # in the order first met: they take turns
        for c in device.cluster.classes:
            if self.serves(c):
                self.model_of(c)
        self.reserve_bytes = max((m.activation_bytes(params.token_budget) for m in self.models), default=0)
        pool = max(device.capacity_bytes - device.weights_bytes - self.reserve_bytes, 0)
        self.pool = KVPool(device, pool)
        self.seqs: dict[int, Seq] = {}  # request id -> its Seq, while on this device
        self.running: list[Seq] = []  # in order of arrival
        self.swapped: dict[MixedStep, list] = {}  # model -> heap of (arrival_s, id, Seq)
        self.turn = 0

    # -- what it serves ----------------------------------------------------------------------------

    def serves(self, c) -> bool:
        """Whether class c runs stages here; refuses, in one line, one whose stages here are not prefill + decode."""
        cluster, here = self.device.cluster, self.device.group
        stages = [i for i, st in enumerate(c.pipeline.stages) if cluster.group_of(st.name) == here]
        if not stages:
            return False
        if c.prefill_index is None or c.decode_index is None or set(stages) != {c.prefill_index, c.decode_index}:
            names = ", ".join(c.pipeline.stages[i].name for i in stages)
            raise UserError(f"policy chunked-prefill runs an LLM's prefill and decode stages together; traffic class "
                            f"{c.name!r} runs {names} here (place its other stages on another group: "
                            f"cluster.groups[].stages)")
        return True

    def model_of(self, c) -> MixedStep:
        stages = c.pipeline.stages
        m = mixed_step(self.device.costs, stages[c.prefill_index], stages[c.decode_index])
        if m not in self.models:
            self.models.append(m)
        return m

    def pages_of(self, c) -> Pages:
        m = self.model_of(c)
        return Pages(m.kv_bytes_per_token * self.params.block_tokens, self.params.block_tokens)

    def alone_bytes(self, device, r: Request, stage) -> int:
        """The largest step's activations and the blocks of r's longest KV (prompt + output - 1 positions)."""
        pages = self.pages_of(r.cls)
        return self.reserve_bytes + pages.needed(longest(r)) * pages.block_bytes

    def waiting_count(self) -> int:
        return super().waiting_count() + sum(len(h) for h in self.swapped.values())

    def take_queued(self, device) -> None:
        for r in device.queue:
            if r.id in self.seqs:  # back for its decode stage: already running here
                continue
            s = self.seqs[r.id] = Seq(r, self.model_of(r.cls), self.pages_of(r.cls), r.cls.prompt_tokens)
            heapq.heappush(self.waiting.setdefault(s.model, []), (*s.order, s))
        device.queue.clear()

    # -- the device's process --------------------------------------------------------------------

    def serve(self, device):
        env, metrics = device.env, device.cluster.metrics
        while True:
            if device.queue:
                self.take_queued(device)
            plan = self.schedule()
            if plan is None:
                yield device.wait()
                continue
            if plan.copy_s:
                start = env.now
                yield env.timeout(plan.copy_s)
                metrics.work(device, start, env.now, 0.0, plan.copy_bytes, env.now - start, device.used_bytes, 0, 0)
                metrics.call(device, start, env.now, "kv-copy", plan.copied, 0, 0)
            if not plan.items:
                continue
            start = env.now
            attention = [(q, s.computed + q) for s, q in plan.items]
            logits = sum(1 for s, q in plan.items if s.computed + q >= s.target)
            cost = plan.model.cost(sum(q for _, q in plan.items), logits, attention,
                                   self.params.decode_attention == "batched")
            metrics.kv(device, start, self.pool.used_bytes, self.pool.capacity_bytes)
            device.hold(0, self.reserve_bytes)
            used = device.used_bytes
            for s, _ in plan.items:
                if s.r.first_start_s is None:
                    s.r.first_start_s = start
            yield env.timeout(cost.seconds)
            device.hold(0, -self.reserve_bytes)
            members = [s.r for s, _ in plan.items]
            metrics.work(device, start, env.now, cost.flops, cost.bytes, env.now - start, used,
                         max(kv for _, kv in attention), len(members))
            metrics.call(device, start, env.now, "step", members, cost.fallback_ops)
            self.finish(device, plan, start)
            metrics.kv(device, env.now, self.pool.used_bytes, self.pool.capacity_bytes)

    def finish(self, device, plan: Plan, start_s: float) -> None:
        """The step ended: positions computed, tokens emitted, stages ended."""
        first, more = [], []
        for s, q in plan.items:
            s.computed += q
            if s.computed >= s.target:
                s.emitted += 1
                (first if s.r.stage_index == s.r.cls.prefill_index else more).append(s)
        cluster = device.cluster
        if more:
            cluster.metrics.tokens([s.r for s in more], start_s, None, device.env.now)
        for s in first:  # the prefill stage ends with the first token; the decode stage begins here
            cluster.stage_done(s.r, device)
        for s in more:
            r = s.r
            r.calls_done += 1
            if r.calls_done == r.stage.calls:
                self.pool.free(s.pages)
                self.running.remove(s)
                del self.seqs[r.id]
                cluster.stage_done(r, device)

    # -- one step's plan -------------------------------------------------------------------------

    def schedule(self) -> Plan | None:
        model = self.next_model()
        if model is None:
            return None
        plan = Plan(model)
        budget = self.params.token_budget
        placed: set[int] = set()
        preempted = False
        for s in [s for s in self.running if s.model is model]:
            if budget == 0:
                break
            if not s.running:  # preempted earlier in this loop
                continue
            q = 1 if s.computed >= s.target else min(s.target - s.computed, budget)
            while not self.pool.grow(s.pages, s.computed + q):
                victim = next(v for v in reversed(self.running) if id(v) not in placed)
                self.preempt(victim, plan)
                preempted = True
                if victim is s:
                    break
            if s.running:
                plan.items.append((s, q))
                placed.add(id(s))
                budget -= q
        if not preempted:
            budget = self.swap_in(model, plan, budget, placed)
            budget = self.admit_waiting(model, plan, budget)
        return plan if plan.items or plan.copy_s else None

    def swap_in(self, model: MixedStep, plan: Plan, budget: int, placed: set) -> int:
        """Bring swapped requests of `model` back, oldest first, while room allows; place them if blocks allow."""
        heap = self.swapped.get(model)
        while heap and len(self.running) < self.params.max_running:
            s = heap[0][2]
            if not self.pool.grow(s.pages, s.computed):
                break
            heapq.heappop(heap)
            plan.copy_s += s.pages.bytes / self.copy_Bps
            plan.copy_bytes += s.pages.bytes
            plan.copied.append(s.r)
            self.join(s)
            q = 1 if s.computed >= s.target else min(s.target - s.computed, budget)
            if budget and self.pool.grow(s.pages, s.computed + q):
                plan.items.append((s, q))
                placed.add(id(s))
                budget -= q
        return budget

    def admit_waiting(self, model: MixedStep, plan: Plan, budget: int) -> int:
        """Waiting requests of `model`, oldest first, take prefill chunks while budget, room and blocks allow."""
        heap = self.waiting.get(model)
        while heap and budget and len(self.running) < self.params.max_running:
            s = heap[0][2]
            q = min(s.target - s.computed, budget)
            if not self.pool.grow(s.pages, s.computed + q):
                break
            heapq.heappop(heap)
            self.join(s)
            plan.items.append((s, q))
            budget -= q
        return budget

    def join(self, s: Seq) -> None:
        s.running = True
        insort(self.running, s, key=lambda x: x.order)

    def preempt(self, s: Seq, plan: Plan) -> None:
        """Take s's blocks: to the host (swap) or gone, to be recomputed (recompute)."""
        self.running.remove(s)
        s.running = False
        self.device.cluster.metrics.preempted(s.r, self.params.preemption)
        if self.params.preemption == "swap":
            moved = self.pool.free(s.pages)
            plan.copy_s += moved / self.copy_Bps
            plan.copy_bytes += moved
            plan.copied.append(s.r)
            heapq.heappush(self.swapped.setdefault(s.model, []), (*s.order, s))
        else:
            self.pool.free(s.pages)
            s.target, s.computed = s.r.cls.prompt_tokens + s.emitted, 0
            heapq.heappush(self.waiting.setdefault(s.model, []), (*s.order, s))

    def next_model(self) -> MixedStep | None:
        """The model whose requests run the next step: models with work take turns."""
        busy = [m for m in self.models if self.waiting.get(m) or self.swapped.get(m)
                or any(s.model is m for s in self.running)]
        if not busy:
            return None
        self.turn += 1
        return busy[self.turn % len(busy)]


def longest(r: Request) -> int:
    """KV positions r holds at most: its prompt and every output token but the last."""
    return r.cls.prompt_tokens + r.cls.tokens_out - 1
