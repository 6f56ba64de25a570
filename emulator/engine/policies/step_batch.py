"""step-batch: continuous batching at step boundaries.

Between any two calls, requests join and leave running batches: one running
batch per batching key (a stage of a workload at given knobs), at most
`max_batch` requests each. Denoising members may be at different steps (their
calls cost the same); autoregressive members at different positions run the
decode step padded to the longest KV cache. A request is admitted only if the
KV cache of its whole generation fits beside everyone else's (reserved at
admission, so a running request is never evicted). Running batches take turns,
one call each, so a new request's text encoder or prefill is not starved by a
long denoising loop.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from emulator.engine.policies.base import BatchPolicy, batch_of


class StepBatch(BatchPolicy):
    @dataclass(frozen=True)
    class Params:
        max_batch: int = field(default=8, metadata={"min": 1})  # requests per running batch

    def __init__(self, params, device):
        super().__init__(params, device)
        self.running: dict = {}  # key -> [(request, stage index)]
        self.turn = 0

    def next_batch(self, device, now):
        for key in list(self.running):
            members = [(r, i) for r, i in self.running[key] if r.stage_index == i and r.device is device]
            if members:
                self.running[key] = members
            else:
                del self.running[key]
        self.join(device)
        if not self.running:
            return None
        keys = sorted(self.running, key=lambda k: self.running[k][0][0].id)
        key = keys[self.turn % len(keys)]
        self.turn += 1
        return batch_of(device, [r for r, _ in self.running[key]], pad=False)

    def join(self, device) -> None:
        """Admit waiting requests into running batches, oldest first, while room and memory allow."""
        for key, heap in self.waiting.items():
            members = self.running.get(key, [])
            # only one call runs at a time: the largest activations of any running batch must fit too
            others = max((self.activation(device, m) for k, m in self.running.items() if k != key), default=0)
            while heap and len(members) < self.params.max_batch:
                r = heap[0][2]
                trial = [m for m, _ in members] + [r]
                if not self.admit(device, r, max(others, self.activation(device, [(m, 0) for m in trial]))):
                    break
                heapq.heappop(heap)
                members.append((r, r.stage_index))
            if members:
                self.running[key] = members

    @staticmethod
    def activation(device, members: list) -> int:
        batch = batch_of(device, [r for r, _ in members], pad=False)
        return device.costs.at(batch.stage, batch.size).activation_bytes
