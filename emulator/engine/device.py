"""One simulated device: its queue, its memory, and the loop that runs its policy's batches.

Memory holds the weights of every model the device serves (fixed), what
admitted requests reserve while they live here (KV caches; a pod member's
activations), and the activations of the call that is running (peak by
liveness, baseline similarity matrices included). `hold` refuses nothing
silently: a policy asks `fits` before forming a batch, and `hold` checks again
and fails loudly if a policy got it wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import simpy

from emulator.cost.model import CostModel
from emulator.engine.request import Request
from emulator.engine.stepcost import StepCosts
from emulator.pipeline import Stage


@dataclass
class Batch:
    """One call of a stage for several requests together."""

    members: list[Request]
    stage: Stage  # the graph that runs: the members' stage, or the largest member's when padded
    size: int  # per-call batch: the members' per-request batches summed
    at: object = None  # the StageAtBatch that costs it, filled on first run
    seq_len: int = 0
    calls: int = 1  # calls to run back to back: a policy that admits nobody mid-stage runs them all at once
    started: bool = False  # its members' first calls have been noted


class Device:
    def __init__(self, env: simpy.Environment, index: int, group: int, model: CostModel, costs: StepCosts,
                 weights_bytes: int, cluster):
        self.env, self.index, self.group, self.model, self.costs = env, index, group, model, costs
        self.capacity_bytes = int(model.device.memory_bytes)
        self.weights_bytes = weights_bytes
        self.reserved_bytes = 0  # admitted requests' KV caches (and pod members' activations)
        self.running_bytes = 0  # activations of the calls running now
        self.peak_bytes = weights_bytes
        self.queue: list[Request] = []  # waiting to be admitted, in the order they came
        self.assigned = 0  # requests routed here that have not left (the router's load)
        self.cluster = cluster
        self.policy = None
        self.node = 0  # node of its group (gang placement; `emulator.engine.gangs`)
        self._wake: simpy.Event | None = None
        self._resident: dict[tuple[int, int], int] = {}  # (class, group) -> resident bytes

    # -- queue --------------------------------------------------------------------------------

    def enqueue(self, r: Request) -> None:
        self.queue.append(r)
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def wait(self, until_s: float | None = None):
        """An event that fires when a request is queued here (or at `until_s`)."""
        self._wake = self.env.event()
        if until_s is None:
            return self._wake
        return self._wake | self.env.timeout(max(until_s - self.env.now, 0.0))

    # -- memory ---------------------------------------------------------------------------------

    @property
    def used_bytes(self) -> int:
        return self.weights_bytes + self.reserved_bytes + self.running_bytes

    def resident_need(self, r: Request) -> int:
        """What request r keeps here while it lives here: the KV cache of its stages in this group."""
        key = (r.cls.key, self.group)
        need = self._resident.get(key)
        if need is None:
            stages = self.cluster.stages_in_group(r, self.group)
            need = self._resident[key] = max(self.costs.at(s, s.batch).resident_bytes for s in stages)
        return need

    def fits(self, reserve_bytes: int, activation_bytes: int) -> bool:
        return self.weights_bytes + self.reserved_bytes + reserve_bytes + activation_bytes <= self.capacity_bytes

    def reserve(self, r: Request, extra_bytes: int = 0) -> None:
        """Admit r: hold its resident bytes (and `extra_bytes`) until it leaves this device."""
        held = self.resident_need(r) + extra_bytes
        r.held_bytes = held
        self.reserved_bytes += held
        self._check()

    def release(self, r: Request) -> None:
        if r.held_bytes is not None:
            self.reserved_bytes -= r.held_bytes
            r.held_bytes = None

    def hold(self, reserved_delta_bytes: int, running_delta_bytes: int = 0) -> None:
        """Change the bytes held for requests and for running calls by these amounts (a policy that allocates
        memory itself: KV blocks, a gang rank's share of a request's KV cache); checked against the capacity."""
        self.reserved_bytes += reserved_delta_bytes
        self.running_bytes += running_delta_bytes
        self._check()

    def is_admitted(self, r: Request) -> bool:
        return r.held_bytes is not None

    def _check(self) -> None:
        used = self.used_bytes
        if used > self.capacity_bytes:
            raise RuntimeError(f"device {self.index}: {used} bytes in use exceed its {self.capacity_bytes}: "
                               f"a policy formed a batch that does not fit")
        if used > self.peak_bytes:  # noqa: PLR1730 (hot path: cheaper than max())
            self.peak_bytes = used

    # -- running --------------------------------------------------------------------------------

    def begin(self, batch: Batch) -> tuple:
        """Start `batch`'s calls: hold their activations; returns (seconds, what `end` needs)."""
        at = batch.at
        if at is None:  # policies reuse a Batch while its members stay: cost it once
            at = batch.at = self.costs.at(batch.stage, batch.size)
            batch.seq_len = self.costs.seq_len(batch.stage)
        n = batch.calls
        per_call = None
        if batch.stage.kv_growth:  # decode: the longest member's KV length sets each call
            first = max(m.calls_done + m.kv_offset for m in batch.members)  # in the costed stage's calls
            base = at.base
            calls = [base.step(c) for c in range(first, first + n)]
            per_call = [c.seconds for c in calls]
            cost = (sum(per_call), sum(c.flops for c in calls), sum(c.bytes for c in calls),
                    sum(c.fallback_ops for c in calls))
        elif (kinds := self.policy.call_kinds(batch)) is not None:  # a per-call schedule: its kinds summed
            cost = at.cost_of(kinds)
        elif n == 1:
            cost = at.first
        else:
            one = at.first
            cost = (one[0] * n, one[1] * n, one[2] * n, one[3] * n)
        self.running_bytes += at.activation_bytes
        used = self.weights_bytes + self.reserved_bytes + self.running_bytes
        if used > self.peak_bytes:
            self._check()
        return cost[0], (cost, used, self.env.now, per_call)

    def end(self, batch: Batch, started) -> None:
        """The calls of `batch` ended: record them (and the tokens a decode emitted) and advance its members."""
        (_seconds, flops, moved, fallback), used, start, per_call = started
        now = self.env.now
        members = batch.members
        self.running_bytes -= batch.at.activation_bytes
        metrics = self.cluster.metrics
        metrics.work(self, start, now, flops, moved, now - start, used, batch.seq_len, len(members))
        metrics.call(self, start, now, batch.stage.name, members, fallback, batch.calls)
        if per_call is not None:
            metrics.tokens(members, start, per_call, now)
        done = self.policy.advance(batch, start)
        if done:
            self.policy.ended(done)
            for m in done:
                self.cluster.stage_done(m, self)
