"""A model's kernels timed one by one, right after the model itself ran: how much of an error is composition.

`validate --isolated` times every distinct kernel of the lowered graph alone,
with the calibration's own runners, buffers and clock, and sums the times with
their counts. Against the model's measured time this splits a validation error
in two:
- measured / isolated: the kernels compose differently inside the model than
  alone (cache state between kernels, framework work between them);
- predicted / isolated: the profile's kernel times differ from the kernels'
  times today (speed drift since the calibration, interpolation between shapes).
On a CPU whose profile records its reference speed, the isolated times are
taken to that speed the way `calibration run` does, so all three numbers are at
one speed.
"""

from __future__ import annotations

import sys
from collections import Counter

from emulator.cost.kernels import kernel_kind


def isolated_seconds(graph, attention: str, dtype: str, device: str, cache_bytes: float,
                     speed: dict | None = None, budget_s: float = 0.3) -> dict[str, float]:
    """Seconds per kernel kind of the graph's ops, each distinct kernel timed alone; "untimed": their count."""
    from tqdm import tqdm

    from calibration.drift import DriftCorrectedCpuClock, DriftReference, compute_share, stream_share
    from calibration.kernels import make_runner
    from calibration.run import buffer_sets, footprint_bytes
    from calibration.timers import CpuClock, CudaClock, measure
    from emulator.devices import device as catalog_device

    counts = Counter((kernel_kind(op, attention), op.shape) for op in graph.ops)
    reference = DriftReference() if device == "cpu" and speed else None
    if device == "cuda":
        clock = CudaClock()
    elif reference:
        clock = DriftCorrectedCpuClock(reference, baseline_s=speed["compute_s"],  # the profile's speeds
                                       stream_baseline_s=speed.get("weight_stream_s"))
    else:
        clock = CpuClock()
    catalog = catalog_device("cpu") if device == "cpu" else None
    seconds: dict[str, float] = {}
    untimed = 0
    for (kind, shape), n in tqdm(sorted(counts.items(), key=lambda kv: str(kv[0])), desc="kernels alone",
                                 unit="kernel", file=sys.stderr, leave=False):
        try:
            runner = make_runner(kind, shape, dtype, device, buffer_sets(footprint_bytes(kind, shape, dtype),
                                                                         cache_bytes))
        except (ValueError, KeyError, NotImplementedError):  # a kind calibration has no runner for
            untimed += n
            continue
        if reference:
            clock.compute_share = compute_share(kind, shape, dtype, catalog)
            clock.stream_share = stream_share(kind, shape, dtype, catalog)
        t = measure(runner.run, clock, budget_s=budget_s, tolerance=0.02).median_s
        seconds[kind] = seconds.get(kind, 0.0) + n * t
    seconds["untimed"] = float(untimed)
    return seconds
