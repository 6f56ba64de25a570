"""buckets: batches form only among requests of one sequence-length bucket.

A request's bucket is where the attention sequence length of its longest-running
stage (the denoising UNet or the decoder) falls among the configured edges:
bucket i holds lengths up to edges[i], one more bucket holds the rest. Within a
bucket, requests of one model batch as `static-batch` does, padded to the
bucket's largest member; the next batch comes from the bucket with the oldest
waiting request (`choose: oldest`) or the most waiting requests (`longest`).
With the `bucket-affinity` router, each bucket's requests go to the same
devices (bucket i to device i mod N), dedicating devices to buckets.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Literal

from emulator.engine.policies.static_batch import StaticBatch


class Buckets(StaticBatch):
    @dataclass(frozen=True)
    class Params:
        edges: tuple[int, ...] = field(default=(1024, 4096, 9216), metadata={"min": 1})  # sequence lengths
        max_batch: int = field(default=4, metadata={"min": 1})
        window_s: float = field(default=0.0, metadata={"min": 0})
        choose: Literal["oldest", "longest"] = "oldest"
        pad: bool = True  # members of one bucket may differ in size below its edge

        def problem(self) -> str | None:
            if any(b <= a for a, b in zip(self.edges, self.edges[1:])):
                return f"edges must increase, got {list(self.edges)}"
            return None

    def bucket_of(self, r) -> int:
        return bisect.bisect_left(self.params.edges, r.cls.bucket_seq_len)

    def key_of(self, r):
        return (self.bucket_of(r),) + r.pad_key

    def key_order(self) -> list:
        keys = [k for k, h in self.waiting.items() if h]
        if self.params.choose == "longest":
            return sorted(keys, key=lambda k: (-len(self.waiting[k]), self.waiting[k][0][:2]))
        return sorted(keys, key=lambda k: self.waiting[k][0][:2])
