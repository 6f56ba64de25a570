"""step-batch: continuous batching at step boundaries.

Between any two calls, requests join and leave running batches: one running
batch per batching key (a stage of a workload at given knobs), at most
`max_batch` requests each. Denoising members may be at different steps (their
calls cost the same); autoregressive members at different positions run the
decode step padded to the longest KV cache. A request is admitted only if the
KV cache of its whole generation fits beside everyone else's (reserved at
admission, so a running request is never evicted) and the largest call of any
running batch still fits. Running batches take turns, one call each, so a new
request's text encoder or prefill is not starved by a long denoising loop.

Progress of a denoising batch is counted per batch, not per member: a key's
calls are ticked, and a member's stage ends at the tick it joined plus the
calls it had left, kept in a heap. A step then costs the same whether 2 or 64
requests share it; decode batches count per member (their KV lengths matter).
Under a per-call schedule (step caching, guidance on part of the steps)
members at different steps run one call together, costed as the heaviest of
their calls' kinds at the whole batch (`BatchPolicy.call_kinds`); each member's
call is the key's tick less the tick at which it would have made its first.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from emulator.engine.device import Batch
from emulator.engine.policies.base import BatchPolicy, longest
from emulator.engine.request import Request


@dataclass(eq=False)
class RunningBatch:
    """The requests of one batching key running together (mutable: members join and leave)."""

    members: list[Request] = field(default_factory=list)  # in order of joining
    size: int = 0  # per-call batch: the members' per-request batches summed
    activation_bytes: int = 0  # activations of one call at that size
    batch: Batch | None = None  # the Batch of these members, while they stay the same
    ticks: int = 0  # calls run so far
    ends: list = field(default_factory=list)  # heap of (tick at which a member's stage ends, id, member)
    fresh: list[Request] = field(default_factory=list)  # members that joined since the last call
    origin: dict = field(default_factory=dict)  # member id -> tick of its call 0: its call now is ticks - origin


class StepBatch(BatchPolicy):
    @dataclass(frozen=True)
    class Params:
        max_batch: int = field(default=8, metadata={"min": 1})  # requests per running batch

    def __init__(self, params, device):
        super().__init__(params, device)
        self.running: dict[object, RunningBatch] = {}  # batching key -> its running batch, while it has members
        self.turn = 0
        self.stale = True  # something arrived or left since join last ran: it may admit more

    def take_queued(self, device) -> None:
        super().take_queued(device)
        self.stale = True

    def next_batch(self, device, now):
        if self.stale:
            self.stale = False
            self.join(device)
        if not self.running:
            return None
        if len(self.running) == 1:
            key = next(iter(self.running))
        else:
            keys = sorted(self.running, key=lambda k: self.running[k].members[0].id)
            key = keys[self.turn % len(keys)]
            self.turn += 1
        run = self.running[key]
        if run.batch is None:  # the Batch shares the members list: leaving members leave it too
            run.batch = Batch(run.members, costed_stage(run.members), run.size)
            run.batch.key = key
        return run.batch

    def positions(self, batch) -> list[int]:
        run = self.running[batch.key]
        return [run.ticks - run.origin[m.id] for m in batch.members]

    def advance(self, batch, start_s: float) -> list:
        if batch.stage.kv_growth:
            return super().advance(batch, start_s)
        run = self.running[batch.key]
        for r in run.fresh:
            if r.first_start_s is None:
                r.first_start_s = start_s
        run.fresh = []
        run.ticks += 1
        done = []
        while run.ends and run.ends[0][0] <= run.ticks:
            r = heapq.heappop(run.ends)[2]
            r.calls_done = r.stage.calls
            done.append(r)
        return done

    def ended(self, members) -> None:
        self.stale = True  # room, and memory once they leave
        for r in members:
            key = self.key_of(r)
            run = self.running[key]
            run.members.remove(r)
            run.origin.pop(r.id, None)
            run.size -= r.stage.batch
            run.batch = None
            if run.members:
                run.activation_bytes = activation(r.device, costed_stage(run.members), run.size)
            else:
                del self.running[key]

    def join(self, device) -> None:
        """Admit waiting requests into running batches, oldest first, while room and memory allow."""
        for key, heap in self.waiting.items():
            run = self.running.get(key)
            if heap and (run is None or len(run.members) < self.params.max_batch):
                self.fill(device, key, heap, run)

    def fill(self, device, key, heap: list, run: RunningBatch | None) -> None:
        """Admit the oldest of one key's waiting requests into its running batch (made if none)."""
        # one call runs at a time: the largest activations of any running batch must fit too
        others = max((o.activation_bytes for k, o in self.running.items() if k != key), default=0)
        size = run.size if run is not None else 0
        top = None if run is None or not run.members[0].stage.kv_growth else costed_member(run.members)
        while heap and (run is None or len(run.members) < self.params.max_batch):
            r = heap[0][2]
            top_r = longest(r, top) if r.stage.kv_growth else r
            if not self.admit(device, r, max(others, activation(device, top_r.stage, size + r.stage.batch))):
                break
            top = top_r
            heapq.heappop(heap)
            if run is None:
                run = self.running[key] = RunningBatch()
            run.members.append(r)
            size += r.stage.batch
            if not r.stage.kv_growth:
                heapq.heappush(run.ends, (run.ticks + r.stage.calls - r.calls_done, r.id, r))
                run.origin[r.id] = run.ticks - r.calls_done
                run.fresh.append(r)
            run.batch = None
        if run is not None:
            run.size = size
            run.activation_bytes = activation(device, costed_stage(run.members), size)


def activation(device, stage, size: int) -> int:
    return device.costs.at(stage, size).activation_bytes


def costed_member(members: list[Request]) -> Request:
    """The member whose stage costs the call: the first; of a decode, the one whose KV cache ends longest."""
    if not members[0].stage.kv_growth or len(members) == 1:
        return members[0]
    top = None
    for m in members:
        top = longest(m, top)
    return top


def costed_stage(members: list[Request]):
    return costed_member(members).stage
