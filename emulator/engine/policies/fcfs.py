"""fcfs: one request at a time, in order of arrival, through its whole pipeline."""

from __future__ import annotations

import heapq

from emulator.engine.device import Batch
from emulator.engine.policies.base import BatchPolicy


class Fcfs(BatchPolicy):
    def __init__(self, params, device):
        super().__init__(params, device)
        self.current = None  # (request, stage index) being run

    def key_of(self, r):
        return None  # one queue: the oldest request goes first, also when it comes back for its next stage

    def next_batch(self, device, now):
        if self.current:
            r, stage_index = self.current
            if r.stage_index == stage_index and r.device is device:
                return Batch([r], r.stage, r.stage.batch)
            self.current = None
        heap = self.waiting.get(None)
        if not heap:
            return None
        r = heap[0][2]
        if not self.admit(device, r, device.costs.at(r.stage, r.stage.batch).activation_bytes):
            return None  # memory frees only when a request leaves; an arrival wakes us
        heapq.heappop(heap)
        self.current = (r, r.stage_index)
        return Batch([r], r.stage, r.stage.batch)
