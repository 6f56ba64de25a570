"""What every batching policy shares: its waiting requests, and the loop that runs what it picks.

A policy keeps the requests queued on its device in heaps, one per batching
key, ordered by arrival (a request that comes back for its next stage keeps its
place). A batching policy has one method of its own, `next_batch(device, now)`,
which returns the next call to run, a time to look again, or None to wait for
an arrival.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass

from emulator.engine.device import Batch, Device
from emulator.engine.request import Request
from emulator.pipeline import Stage
from emulator.schedules import join


class BatchPolicy:
    @dataclass(frozen=True)
    class Params:
        pass

    def __init__(self, params, device: Device):
        self.params = params
        self.waiting: dict[object, list] = {}  # batching key -> heap of (arrival_s, id, request)
        self.changed = False  # set by the device when a member of the last batch finished its stage

    # -- hooks ----------------------------------------------------------------------------------

    def key_of(self, r: Request):
        """Requests with equal keys may share a call."""
        return r.stage_key

    def next_batch(self, device: Device, now: float) -> Batch | float | None:
        raise NotImplementedError

    def advance(self, batch: Batch, start_s: float) -> list[Request]:
        """Count the batch's calls as done by its members; return those whose stage has ended."""
        members, n = batch.members, batch.calls
        if not batch.started:  # a Batch is made anew whenever a request joins
            batch.started = True
            for m in members:
                if m.first_start_s is None:
                    m.first_start_s = start_s
        finished = False
        for m in members:
            c = m.calls_done = m.calls_done + n
            if c == m.stage.calls:
                finished = True
        return [m for m in members if m.calls_done == m.stage.calls] if finished else []

    def positions(self, batch: Batch) -> list[int]:
        """Each member's next call (0-based) of its stage."""
        return [m.calls_done for m in batch.members]

    def scheduled(self, batch: Batch) -> bool:
        """Whether the batch's calls follow a per-call schedule (its members share the costed stage's key)."""
        return batch.stage.schedule is not None

    def call_kinds(self, batch: Batch) -> dict | None:
        """Calls per kind of the batch's next `batch.calls` calls, or None without a schedule. Members at
        different calls run one call together: it is costed as the heaviest of their kinds (the deepest
        computed, guided if any member is), at the whole batch."""
        if not self.scheduled(batch):
            return None
        members, at = batch.members, self.positions(batch)
        counts: Counter = Counter()
        for j in range(batch.calls):
            counts[join(m.stage.kind(p + j) for m, p in zip(members, at))] += 1
        return dict(counts)

    def ended(self, members: list[Request]) -> None:
        """These members of the last batch finished their stage (they still hold it)."""
        self.changed = True

    def bucket_of(self, r: Request) -> int:
        """For the bucket-affinity router: which bucket r belongs to (here: its traffic class)."""
        return r.cls.index

    def alone_bytes(self, device: Device, r: Request, stage: Stage) -> int:
        """Memory r needs on `device` to run `stage` by itself (can it ever run?)."""
        return device.resident_need(r) + device.costs.at(stage, stage.batch).activation_bytes

    # -- shared machinery -------------------------------------------------------------------------

    def serve(self, device: Device):
        """The device's process."""
        env = device.env
        while True:
            if device.queue:
                self.take_queued(device)
            plan = self.next_batch(device, env.now)
            if plan is None:
                yield device.wait()
            elif isinstance(plan, float):
                yield device.wait(plan)
            else:
                seconds, started = device.begin(plan)
                yield env.timeout(seconds)
                device.end(plan, started)

    def take_queued(self, device: Device) -> None:
        for r in device.queue:
            heapq.heappush(self.waiting.setdefault(self.key_of(r), []), (r.arrival_s, r.id, r))
        device.queue.clear()

    def waiting_count(self) -> int:
        return sum(len(h) for h in self.waiting.values())

    def oldest_key(self):
        """The key whose oldest waiting request arrived first."""
        best = None
        for key, heap in self.waiting.items():
            if heap and (best is None or heap[0][:2] < self.waiting[best][0][:2]):
                best = key
        return best

    def admit(self, device: Device, r: Request, activation_bytes: int, reserved_now: int = 0) -> bool:
        """Reserve r's resident memory if it and a call of `activation_bytes` fit; False if not."""
        if device.is_admitted(r):
            return True
        if not device.fits(reserved_now + device.resident_need(r), activation_bytes):
            return False
        device.reserve(r)
        return True


def batch_of(device: Device, members: list[Request], pad: bool) -> Batch:
    """One call for `members`; padded: the graph of the member with the longest attention sequence (a decode:
    of the member whose KV cache ends longest, whose activations are the largest)."""
    stage = members[0].stage
    if pad or stage.kv_growth:
        stage = max(members, key=lambda m: (device.costs.seq_len(m.stage), m.kv_offset + m.stage.calls)).stage
    return Batch(members, stage, sum(m.stage.batch for m in members))


def longest(a: Request, b: Request | None) -> Request:
    """Of two decode members, the one whose KV cache ends longest (b may be None)."""
    return a if b is None or a.kv_offset + a.stage.calls > b.kv_offset + b.stage.calls else b
