"""Sentinel kernels: which profile points read a machine's speed for a graph, and a model timed by them."""

import math
import time

import pytest

torch = pytest.importorskip("torch")

from calibration.cpu.sentinels import (  # noqa: E402
    MIN_KIND_SHARE,
    PER_KIND,
    MIN_TIME_S,
    ModelTiming,
    Sentinel,
    SentinelLevel,
    choose,
    describe,
    time_at_profile_speed,
)
from calibration.validate import predict  # noqa: E402
from emulator.cost import Profile, load_profile  # noqa: E402
from emulator.cost.kernels import kernel_kind  # noqa: E402
from emulator.cost.profile import shape_from_json  # noqa: E402
from emulator.cost.profile import shipped_profile  # noqa: E402


class Block(torch.nn.Module):
    """A conv, a norm and a linear at sizes the CPU profile's grid measured around: [1, 64, 32, 32] in."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(64, 128, 3, padding=1)
        self.norm = torch.nn.GroupNorm(32, 128)
        self.proj = torch.nn.Linear(128, 512)

    def forward(self, x):  # [1, 64, 32, 32] -> [1, 1024, 512]
        h = torch.nn.functional.silu(self.norm(self.conv(x)))
        return self.proj(h.flatten(2).transpose(1, 2))


@pytest.fixture(scope="module")
def graph_and_profile():
    profile = Profile(load_profile(shipped_profile("cpu-fp32")))
    with torch.device("meta"):
        model, x = Block().eval(), torch.zeros(1, 64, 32, 32)
    _, graph = predict(model, (x,), {}, profile, None)
    return graph, profile


def test_sentinels_are_the_profiles_points_nearest_the_graphs_heaviest_kernels_and_not_its_own(graph_and_profile):
    import numpy as np

    from emulator.cost.predictor import log_features

    graph, profile = graph_and_profile
    sentinels = choose(graph, profile)
    kernel_s = {}
    for op in graph.ops:
        key = (kernel_kind(op, "flash"), op.shape)
        kernel_s[key] = kernel_s.get(key, 0.0) + profile.op_time(op)
    seconds = {}
    for (kind, _), t in kernel_s.items():
        seconds[kind] = seconds.get(kind, 0.0) + t
    total = sum(seconds.values())
    kinds = {s.kind for s in sentinels}
    assert "conv2d" in kinds and "linear" in kinds
    assert all(seconds[k] >= MIN_KIND_SHARE * total for k in kinds)
    assert all((s.kind, s.shape) not in kernel_s for s in sentinels)  # the model's own entries stay under test
    assert all(s.profile_s >= MIN_TIME_S for s in sentinels)
    assert sum(s.weight for s in sentinels) == pytest.approx(1.0)
    covered = sum(seconds[k] for k in kinds)
    for kind in kinds:
        mine = [s for s in sentinels if s.kind == kind]
        assert len(mine) == min(PER_KIND, sum(1 for k, _ in kernel_s if k == kind))
        assert len({s.shape for s in mine}) == len(mine)
        assert sum(s.weight for s in mine) == pytest.approx(seconds[kind] / covered)
        # The first stands for the kind's heaviest kernel: no eligible point is nearer to it.
        heaviest = max((t, shape) for (k, shape), t in kernel_s.items() if k == kind)[1]
        target = log_features(profile.predictors[kind].features, heaviest)
        nearest = np.linalg.norm(log_features(profile.predictors[kind].features, mine[0].shape) - target)
        for point in profile.data["kinds"][kind]["points"]:
            shape = shape_from_json(kind, point["shape"])
            pooled_s = profile.predictors[kind].predict(shape)
            if (kind, shape) not in kernel_s and pooled_s >= MIN_TIME_S:
                assert np.linalg.norm(log_features(profile.predictors[kind].features, shape) - target) >= nearest - 1e-12
    # Each is held against the profile's time of its shape: the entry pooled with its neighbours.
    for s in sentinels:
        assert s.profile_s == pytest.approx(profile.predictors[s.kind].predict(s.shape), rel=1e-12)


def test_a_profile_without_the_graphs_kinds_has_no_sentinels(graph_and_profile):
    graph, profile = graph_and_profile
    empty = Profile({**profile.data, "kinds": {k: v for k, v in profile.data["kinds"].items()
                                                if k == "attention_flash"}})
    with pytest.raises(ValueError, match="no kernels"):
        choose(graph, empty)


def test_each_call_is_divided_by_the_readings_around_it():
    class Machine:
        """Slows down by the readings' schedule; a call takes 10 ms times the speed around it."""

        def __init__(self):
            self.readings = [1.0, 2.0, 2.0, 4.0, 1.0, 1.0]
            self.read_count = 0

        def read(self) -> float:
            self.read_count += 1
            return self.readings[self.read_count - 1]

    machine = Machine()

    def fn():
        if machine.read_count:  # the warm-up call comes before the first reading
            before, after = machine.readings[machine.read_count - 1], machine.readings[machine.read_count]
            time.sleep(0.01 * math.sqrt(before * after))

    timing = time_at_profile_speed(fn, machine, calls=5)
    assert machine.read_count == 6 and timing.levels == (1.0, 2.0, 2.0, 4.0, 1.0, 1.0)
    # Raw calls of 14, 20, 28, 20 and 10 ms (hand-computed): median 20 ms; each over its level, 10 ms.
    assert timing.raw_s == pytest.approx(0.02, rel=0.2)
    assert timing.normalized_s == pytest.approx(0.01, rel=0.2)
    text = describe([Sentinel("conv2d", None, 1e-3, 1.0)], ModelTiming(0.01, 0.02, timing.levels))
    assert "1 sentinel kernels (conv2d 1)" in text and "now/profile 1.50 (1.00-4.00)" in text


def test_a_sentinel_reads_its_time_now_against_the_profiles(graph_and_profile, monkeypatch):
    from calibration import timers

    graph, profile = graph_and_profile
    sentinel = choose(graph, profile)[0]
    level = SentinelLevel([Sentinel(sentinel.kind, sentinel.shape, sentinel.profile_s, 1.0)], "fp32",
                          profile.device, budget_s=0.02)
    twice = SentinelLevel([Sentinel(sentinel.kind, sentinel.shape, 2 * sentinel.profile_s, 1.0)], "fp32",
                          profile.device, budget_s=0.02)
    real = level.read()  # timed for real: the machine's speed, whatever it is now
    assert real > 0 and math.isfinite(real)
    assert level.clock.ratios  # the compute reference was read around the batches, as in calibration

    def three_ms(run, clock, **kw):  # the kernel timed through its clock once, then a fixed 3 ms
        clock.samples(run, 1, 1)
        return timers.Timing(median_s=3e-3, min_s=3e-3, spread=0.0, repeats=1, rejected=0)

    monkeypatch.setattr(timers, "measure", three_ms)
    # now / profile, hand-computed from the stand-in time: a profile twice as slow reads half the level
    assert level.read() == pytest.approx(3e-3 / sentinel.profile_s)
    assert twice.read() == pytest.approx(3e-3 / (2 * sentinel.profile_s))
