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
        self.turn = 0

    def ended(self, members) -> None:
        for r in members:
            key = self.key_of(r)
            self.running[key].remove(r)
            self.size[key] -= r.stage.batch
            self.batches.pop(key, None)
            if self.running[key]:
                self.act[key] = device_activation(r.device, r.stage, self.size[key])
            else:
                del self.running[key], self.size[key], self.act[key]

    def next_batch(self, device, now):
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
            batch = self.batches[key] = Batch(list(members), members[0].stage, self.size[key])
        return batch


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
                need = device.costs.at(r.stage, size + r.stage.batch).activation_bytes
                if not self.admit(device, r, max(others, need)):
                    break
                heapq.heappop(heap)
                if members is None:
                    members = self.running[key] = []
                members.append(r)
                size += r.stage.batch
                self.batches.pop(key, None)
            if members:
                self.size[key] = size
                self.act[key] = device_activation(device, members[0].stage, size)


def device_activation(device, stage, size: int) -> int:
    return device.costs.at(stage, size).activation_bytes
