"""static-batch: up to B requests that arrive within a window run a stage together, start to end.

A batch forms from the oldest waiting request's key when B requests of that key
wait, or when the oldest has waited `window_s` since it arrived (the window
counts from arrival, so a batch that finishes one stage goes on to the next at
once). Nobody joins a running batch; members leave as they finish. With `pad`,
requests of the same model and stage but different sizes (resolution, frames)
batch together, padded to the largest member, as a naive server would.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from emulator.engine.policies.base import BatchPolicy, batch_of


class StaticBatch(BatchPolicy):
    @dataclass(frozen=True)
    class Params:
        max_batch: int = field(default=4, metadata={"min": 1})  # requests per batch
        window_s: float = field(default=0.0, metadata={"min": 0})  # longest wait for a fuller batch
        pad: bool = False  # batch mixed sizes of one model, padded to the largest member

    def __init__(self, params, device):
        super().__init__(params, device)
        self.batch = None  # the batch in progress

    def key_of(self, r):
        return r.pad_key if self.params.pad else r.stage_key

    def key_order(self) -> list:
        """Keys with waiting requests, the one to batch first first: here the oldest head."""
        return sorted((k for k, h in self.waiting.items() if h), key=lambda k: self.waiting[k][0][:2])

    def next_batch(self, device, now):
        if self.batch is not None:
            if not self.changed:
                return self.batch
            self.changed = False
            stages = self.batch.stages  # members whose stage ended leave
            left = [r for r, s in zip(self.batch.members, stages) if r.stage is s and r.device is device]
            self.batch = self.remember(batch_of(device, left, self.params.pad)) if left else None
            if self.batch is not None:
                return self.batch
        wake = None
        for key in self.key_order():
            heap = self.waiting[key]
            opens = heap[0][0] + self.params.window_s
            if len(heap) < self.params.max_batch and now < opens:
                wake = opens if wake is None else min(wake, opens)  # wait for more, at most until it closes
                continue
            members = self.fitting_members(device, heap)
            if members:
                for r in members:
                    self.admit(device, r, 0)
                    heapq.heappop(heap)
                self.batch = self.remember(batch_of(device, members, self.params.pad))
                return self.batch
        return wake

    def scheduled(self, batch) -> bool:
        """Padded members may come with different knobs: any member's schedule counts."""
        if not self.params.pad:
            return super().scheduled(batch)
        return any(m.stage.schedule is not None for m in batch.members)

    @staticmethod
    def remember(batch):
        """Note the members' stages; nobody joins, so run calls back to back until the first member ends."""
        batch.stages = [r.stage for r in batch.members]
        batch.calls = min(r.stage.calls - r.calls_done for r in batch.members)
        return batch

    def fitting_members(self, device, heap) -> list:
        """The oldest waiting requests of one key, up to max_batch, as many as memory holds."""
        members, reserved = [], 0
        for _, _, r in heapq.nsmallest(self.params.max_batch, heap):
            trial = batch_of(device, members + [r], self.params.pad)
            activation = device.costs.at(trial.stage, trial.size).activation_bytes
            need = 0 if device.is_admitted(r) else device.resident_need(r)
            if not device.fits(reserved + need, activation):
                break
            members.append(r)
            reserved += need
        return members
