"""Peak memory of tensors alive over a sequence of ops.

Op i allocates its output when it runs and frees it after the last op that reads
it (`last_use[i]`); while it runs it may also hold a transient workspace (the
similarity matrix of baseline attention). The peak is the largest sum of live
bytes at any op.
"""

from __future__ import annotations

from typing import Sequence


def peak_live_bytes(output_bytes: Sequence[int], last_use: Sequence[int], workspace: Sequence[int]) -> int:
    n = len(output_bytes)
    freed_after = [0] * n  # bytes released once op i has run
    for i, last in enumerate(last_use):
        if last < i:
            raise ValueError(f"op {i} is last used at {last}, before it runs")
        freed_after[last] += output_bytes[i]
    live = peak = 0
    for i in range(n):
        live += output_bytes[i]
        peak = max(peak, live + workspace[i])
        live -= freed_after[i]
    return peak
