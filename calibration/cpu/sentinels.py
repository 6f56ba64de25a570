"""A CPU's speed now against its profile's, read by the profile's own kernels, to time a model at the profile's speed.

A shared machine's speed wanders by tens of percent over minutes, so a model
timed now cannot be held against a profile measured an hour ago as is. Its
time is taken to the profile's speed by the speed of sentinel kernels: for
every kernel kind with at least 2% of the graph's predicted time, its 5
heaviest kernels (count times predicted time) each get the profile point
nearest to it in the predictor's space of log shape features, among the points
of at least 0.5 ms and of shapes the graph does not contain, so that the
profile's entries for the model itself are still what the validation tests.
Each sentinel is timed as `calibration run` timed it (the drift references
read around every batch of samples, one untimed run after them) but not
rescaled; the level is the weighted geometric mean of now / profile, each
sentinel weighing the predicted time of the graph kernel it stands for, scaled
so that a kind's sentinels together weigh the kind's share:

    level = exp(sum_i weight_i * log(now_s_i / profile_s_i)),   sum_i weight_i = 1

The model's calls alternate with readings, and each call's time is divided by
the geometric mean of the readings before and after it; the case's time is the
median over calls. A sentinel's time has no upper bound: what reads a kernel's
speed is a kernel of its own balance of memory to arithmetic, often as heavy.
Why sentinels and not the compute reference alone: docs/notes/.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

MIN_KIND_SHARE = 0.02  # kinds below this share of the predicted time get no sentinel
PER_KIND = 5
MIN_TIME_S = 5e-4  # long enough not to be launch-bound


@dataclass(frozen=True)
class Sentinel:
    kind: str
    shape: object
    profile_s: float
    weight: float  # its part of the level: the share of the predicted time it stands for


@dataclass(frozen=True)
class ModelTiming:
    normalized_s: float  # median over calls, at the profile's speed
    raw_s: float  # median over calls, as measured now
    levels: tuple[float, ...]  # the readings around the calls, now / profile


def choose(graph, cost) -> list[Sentinel]:
    """The sentinels of a graph costed by a profile (calibration/profiles/*.json through emulator.cost)."""
    import numpy as np

    from emulator.cost.kernels import kernel_kind
    from emulator.cost.predictor import log_features
    from emulator.cost.profile import shape_from_json

    kernel_s: dict[tuple, float] = defaultdict(float)  # (kind, shape) -> seconds over all its uses
    for op in graph.ops:
        kernel_s[(kernel_kind(op, cost.attention), op.shape)] += cost.op_time(op)
    kind_s: dict[str, float] = defaultdict(float)
    for (kind, _), seconds in kernel_s.items():
        kind_s[kind] += seconds
    total = sum(kind_s.values())
    points = cost.data.get("kinds", {})
    chosen: list[tuple[str, object, float, float]] = []  # kind, shape, profile seconds, graph seconds it stands for
    for kind, seconds in kind_s.items():
        if seconds < MIN_KIND_SHARE * total or kind not in points:
            continue
        predictor = cost.predictors[kind]
        candidates = [(shape, predictor.predict(shape))
                      for shape in (shape_from_json(kind, p["shape"]) for p in points[kind]["points"])]
        candidates = [(shape, t) for shape, t in candidates if t >= MIN_TIME_S]
        candidates = [(shape, t) for shape, t in candidates if (kind, shape) not in kernel_s]
        if not candidates:
            continue
        features = np.array([log_features(predictor.features, shape) for shape, _ in candidates])
        heaviest = sorted(((t, shape) for (k, shape), t in kernel_s.items() if k == kind),
                          key=lambda ts: -ts[0])
        taken: set[int] = set()
        for graph_s, shape in heaviest:
            if len(taken) == min(PER_KIND, len(candidates)):
                break
            distance = np.linalg.norm(features - log_features(predictor.features, shape), axis=1)
            distance[list(taken)] = np.inf
            nearest = int(np.argmin(distance))
            taken.add(nearest)
            chosen.append((kind, candidates[nearest][0], candidates[nearest][1], graph_s))
    if not chosen:
        raise ValueError("the profile has no kernels of this graph's main kinds to read the machine's speed by")
    # Each sentinel weighs the time of the graph kernel it stands for, scaled up so that a kind's
    # sentinels together weigh the kind's share of the predicted time, over the kinds that have some.
    stands_for: dict[str, float] = defaultdict(float)
    for kind, _, _, graph_s in chosen:
        stands_for[kind] += graph_s
    covered = sum(kind_s[k] for k in stands_for)
    return [Sentinel(kind, shape, profile_s, kind_s[kind] / covered * graph_s / stands_for[kind])
            for kind, shape, profile_s, graph_s in chosen]


class SentinelLevel:
    """Reads now / profile over the sentinels, each timed the way the calibration timed it."""

    def __init__(self, sentinels: list[Sentinel], dtype: str, device, budget_s: float = 0.08):
        """device: the profile's catalog Device (its cache size and roofline, as the calibration used them)."""
        from calibration.cpu.drift import DriftCorrectedCpuClock, DriftReference, stream_share
        from calibration.kernels import make_runner
        from calibration.plan import buffer_sets, footprint_bytes

        self.sentinels = sentinels
        self.runners = [make_runner(s.kind, s.shape, dtype, "cpu",
                                    buffer_sets(footprint_bytes(s.kind, s.shape, dtype), device.l2_MB * 1e6))
                        for s in sentinels]
        # A linear's batches had the weight-stream reference read before them too: so do these.
        self.stream_shares = [stream_share(s.kind, s.shape, dtype, device) for s in sentinels]
        self.clock = DriftCorrectedCpuClock(DriftReference(), baseline_s=1.0, stream_baseline_s=1.0, rescale=False)
        self.budget_s = budget_s

    def read(self) -> float:
        from calibration.timers import measure

        log_level = 0.0
        for s, runner, v in zip(self.sentinels, self.runners, self.stream_shares):
            self.clock.stream_share = v
            log_level += s.weight * math.log(measure(runner.run, self.clock, budget_s=self.budget_s).median_s
                                             / s.profile_s)
        return math.exp(log_level)


def time_at_profile_speed(fn, level, calls: int = 5, warmup: int = 1) -> ModelTiming:
    """Median of `calls` calls of fn, each divided by the level read before and after it."""
    for _ in range(warmup):
        fn()
    readings = [level.read()]
    raw = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        raw.append(time.perf_counter() - start)
        readings.append(level.read())
    normalized = [s / math.sqrt(before * after) for s, before, after in zip(raw, readings, readings[1:])]
    return ModelTiming(statistics.median(normalized), statistics.median(raw), tuple(readings))


def describe(sentinels: list[Sentinel], timing: ModelTiming) -> str:
    """How a case was normalized, for its CSV row."""
    per_kind: dict[str, int] = defaultdict(int)
    for s in sentinels:
        per_kind[s.kind] += 1
    kinds = ", ".join(f"{kind} {n}" for kind, n in per_kind.items())
    return (f"to the profile's speed by {len(sentinels)} sentinel kernels ({kinds}); now/profile "
            f"{statistics.median(timing.levels):.2f} ({min(timing.levels):.2f}-{max(timing.levels):.2f})")


class SentinelTimer:
    """A model's calls timed at the profile's speed by sentinels chosen once (calibration validate)."""

    def __init__(self, sentinels: list[Sentinel], cost):
        self.sentinels = sentinels
        self.level = SentinelLevel(sentinels, cost.dtype, cost.device)

    def time(self, fn) -> dict:
        timing = time_at_profile_speed(fn, self.level)
        return {"measured_s": timing.normalized_s, "measured_raw_s": timing.raw_s,
                "normalized": describe(self.sentinels, timing)}
