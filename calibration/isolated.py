"""A model's kernels timed one by one, right after the model itself ran: how much of an error is composition.

`validate --isolated` times every distinct kernel of the lowered graph alone,
with the calibration's own runners, buffers and clock, and sums the times with
their counts. Against the model's measured time this splits a validation error
in two:
- measured / isolated: the kernels compose differently inside the model than
  alone (cache state between kernels, framework work between them);
- predicted / isolated: the profile's entries for these kernels differ from
  what its sentinels say they take today (each entry's own noise against its
  neighbours', interpolation between shapes).
On a CPU the kernels are timed the way `calibration run` timed them (the
references read around every batch) and, like the model, taken to the
profile's speed by its sentinel kernels (calibration/cpu/sentinels.py) read before
and after them, so all three numbers are at one speed by one measure.
"""

from __future__ import annotations

import math
import sys
from collections import Counter

from calibration.plan import buffer_sets, footprint_bytes
from emulator.cost.kernels import kernel_kind


def isolated_seconds(graph, attention: str, dtype: str, setup, cache_bytes: float,
                     level=None, budget_s: float = 0.3) -> dict[str, float]:
    """Seconds per kernel kind of the graph's ops, each distinct kernel timed alone; "untimed": their count.

    setup: the device's Setup (calibration/setup.py); level: where the setup has one, a reader of the
    machine's speed against the profile's (CPU sentinels) to take the times to the profile's speed.
    """
    from tqdm import tqdm

    from calibration.kernels import make_runner
    from calibration.timers import measure

    counts = Counter((kernel_kind(op, attention), op.shape) for op in graph.ops)
    clock = setup.isolated_clock(level)
    before = level.read() if level is not None else 1.0
    seconds: dict[str, float] = {}
    untimed = 0
    for (kind, shape), n in tqdm(sorted(counts.items(), key=lambda kv: str(kv[0])), desc="kernels alone",
                                 unit="kernel", file=sys.stderr, leave=False):
        try:
            sets = buffer_sets(footprint_bytes(kind, shape, dtype), cache_bytes)
            runner = make_runner(kind, shape, dtype, setup.device, sets)
        except (ValueError, KeyError, NotImplementedError):  # a kind calibration has no runner for
            untimed += n
            continue
        clock.start(kind, shape, dtype)
        seconds[kind] = seconds.get(kind, 0.0) + n * measure(runner.run, clock, budget_s=budget_s,
                                                             tolerance=0.02).median_s
    if level is not None:
        scale = math.sqrt(before * level.read())
        seconds = {kind: s / scale for kind, s in seconds.items()}
    seconds["untimed"] = float(untimed)
    return seconds
