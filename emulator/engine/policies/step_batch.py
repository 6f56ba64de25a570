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
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from emulator.engine.device import Batch
from emulator.engine.policies.base import BatchPolicy


class StepBatch(BatchPolicy):
    @dataclass(frozen=True)
    class Params:
        max_batch: int = field(default=8, metadata={"min": 1})  # requests per running batch

    def __init__(self, params, device):
        super().__init__(params, device)
        self.running: dict = {}  # key -> [request], in order of joining
        self.size: dict = {}  # key -> per-call batch of its running requests
        self.act: dict = {}  # key -> activation bytes of its running batch's call
        self.batches: dict = {}  # key -> the Batch of its running requests, while they stay the same
        self.ticks: dict = {}  # key -> calls run so far
        self.ends: dict = {}  # key -> heap of (tick at which the member's stage ends, id, member)
        self.fresh: dict = {}  # key -> members that joined since its last call
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
            keys = sorted(self.running, key=lambda k: self.running[k][0].id)
            key = keys[self.turn % len(keys)]
            self.turn += 1
        batch = self.batches.get(key)
        if batch is None:
            members = self.running[key]
            batch = self.batches[key] = Batch(members, members[0].stage, self.size[key])
            batch.key = key
        return batch

    def advance(self, batch, start_s: float) -> list:
        key = batch.key
        if batch.stage.kv_growth:
            return super().advance(batch, start_s)
        for r in self.fresh.pop(key, ()):
            if r.first_start_s is None:
                r.first_start_s = start_s
        tick = self.ticks[key] = self.ticks[key] + 1
        ends, done = self.ends[key], []
        while ends and ends[0][0] <= tick:
            r = heapq.heappop(ends)[2]
            r.calls_done = r.stage.calls
            done.append(r)
        return done

    def ended(self, members) -> None:
        self.stale = True  # room, and memory once they leave
        for r in members:
            key = self.key_of(r)
            running = self.running[key]
            running.remove(r)
            self.size[key] -= r.stage.batch
            self.batches.pop(key, None)
            if running:
                self.act[key] = activation(r.device, r.stage, self.size[key])
            else:
                for d in (self.running, self.size, self.act, self.ticks, self.ends, self.fresh):
                    d.pop(key, None)

    def join(self, device) -> None:
        """Admit waiting requests into running batches, oldest first, while room and memory allow."""
        for key, heap in self.waiting.items():
            members = self.running.get(key)
            if not heap or (members and len(members) >= self.params.max_batch):
                continue
            # one call runs at a time: the largest activations of any running batch must fit too
            others = max((a for k, a in self.act.items() if k != key), default=0)
            size = self.size.get(key, 0)
            while heap and len(members or ()) < self.params.max_batch:
                r = heap[0][2]
                if not self.admit(device, r, max(others, activation(device, r.stage, size + r.stage.batch))):
                    break
                heapq.heappop(heap)
                if members is None:
                    members = self.running[key] = []
                    self.ticks[key], self.ends[key] = 0, []
                members.append(r)
                size += r.stage.batch
                if not r.stage.kv_growth:
                    heapq.heappush(self.ends[key], (self.ticks[key] + r.stage.calls - r.calls_done, r.id, r))
                    self.fresh.setdefault(key, []).append(r)
                self.batches.pop(key, None)
            if members:
                self.size[key] = size
                self.act[key] = activation(device, members[0].stage, size)


def activation(device, stage, size: int) -> int:
    return device.costs.at(stage, size).activation_bytes
