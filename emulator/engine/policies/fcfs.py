"""fcfs: one request at a time, in order of arrival, through its whole pipeline."""

from __future__ import annotations

import heapq

from emulator.engine.device import Batch
from emulator.engine.policies.base import BatchPolicy


class Fcfs(BatchPolicy):
    def __init__(self, params, device):
        super().__init__(params, device)
        self.batch = None  # the request being run, until its stage ends

    def key_of(self, r):
        return None  # one queue: the oldest request goes first, also when it comes back for its next stage

    def next_batch(self, device, now):
        if self.batch is not None and not self.changed:
            return self.batch
        self.batch, self.changed = None, False
        heap = self.waiting.get(None)
        if not heap:
            return None
        r = heap[0][2]
        if not self.admit(device, r, device.costs.at(r.stage, r.stage.batch).activation_bytes):
            return None  # memory frees only when a request leaves; an arrival wakes us
        heapq.heappop(heap)
        # nobody can join: the whole stage is one run of back-to-back calls
        self.batch = Batch([r], r.stage, r.stage.batch, calls=r.stage.calls - r.calls_done)
        return self.batch
