"""One convention for kernel time (device execution in a back-to-back replay, launch excluded): the CUDA-graph
clock on a fake CUDA (no GPU here), and the estimate of the launch cost a profile's kernel times carry."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from calibration.kernel_excess import RECOMMENDED_FIELD, kernel_excess
from calibration.timers import CudaGraphClock, launches_per_replay, measure

KERNEL_S = 3e-6  # device execution of the fake kernel
LAUNCH_GAP_S = 2.6e-6  # what an eager launch between two events adds on the device
GRAPH_LAUNCH_S = 5e-6  # one graph replay's own start-up


class FakeCuda:
    """Just enough of torch.cuda: a device clock that eager runs and graph replays advance."""

    def __init__(self, kernel_s: float = KERNEL_S):
        self.kernel_s, self.now, self.capturing, self.emptied = kernel_s, 0.0, None, 0

    def Event(self, enable_timing: bool = False):  # noqa: N802 (torch's name)
        cuda = self

        class Event:
            t = 0.0

            def record(self):
                self.t = cuda.now

            def elapsed_time(self, end) -> float:
                return (end.t - self.t) * 1e3  # ms, as torch returns

        return Event()

    def CUDAGraph(self):  # noqa: N802 (torch's name)
        cuda = self

        class Graph:
            launches: list[int] = []

            def replay(self):
                cuda.now += GRAPH_LAUNCH_S + len(self.launches) * cuda.kernel_s

        return Graph()

    @contextmanager
    def graph(self, g):
        g.launches, self.capturing = [], g
        yield
        self.capturing = None

    def kernel(self, i: int) -> None:
        if self.capturing is not None:
            self.capturing.launches.append(i)
        else:
            self.now += LAUNCH_GAP_S + self.kernel_s

    def synchronize(self):
        pass

    def _sleep(self, cycles: int):
        pass

    def empty_cache(self):
        self.emptied += 1


class FakeTorch:
    def __init__(self, kernel_s: float = KERNEL_S):
        self.cuda = FakeCuda(kernel_s)


def test_graph_clock_measures_device_time_without_the_launch():
    torch = FakeTorch()
    clock = CudaGraphClock(torch)
    samples = clock.samples(torch.cuda.kernel, 3, 5)
    assert all(s == pytest.approx(KERNEL_S, rel=0.01) for s in samples)  # eager events: 5.6 us
    expected = launches_per_replay(KERNEL_S + LAUNCH_GAP_S, clock.TARGET_REPLAY_S, clock.MAX_LAUNCHES)
    assert clock.launches == expected > 100 and clock.readings() == {"launches_per_replay": expected}
    assert clock.graph.launches == list(range(3, 3 + expected))  # rotating over the input sets


def test_graph_clock_captures_once_per_kernel_and_lets_go_of_it():
    torch = FakeTorch()
    clock = CudaGraphClock(torch)
    clock.samples(torch.cuda.kernel, 0, 2)
    graph = clock.graph
    clock.samples(torch.cuda.kernel, 2, 2)
    assert clock.graph is graph  # same kernel: same graph
    clock.start("linear", None, "fp16")
    assert clock.graph is None and clock.run is None  # the next kernel's graph is its own


def test_a_long_kernel_is_one_launch_per_replay():
    torch = FakeTorch(kernel_s=0.1)
    clock = CudaGraphClock(torch)
    assert clock.samples(torch.cuda.kernel, 0, 1)[0] == pytest.approx(0.1, rel=1e-3) and clock.launches == 1
    assert launches_per_replay(0.0, 1e-3, 256) == 256 and launches_per_replay(1e-5, 1e-3, 256) == 100


def test_measure_with_the_graph_clock_gives_the_kernel_time():
    torch = FakeTorch()
    timing = measure(torch.cuda.kernel, CudaGraphClock(torch), budget_s=1.0)
    assert timing.median_s == pytest.approx(KERNEL_S, rel=0.01) and timing.repeats >= 7


def test_gpu_setup_release_drops_every_clock_graph():
    from calibration.gpu import CudaSetup, set_bytes_limit

    setup = object.__new__(CudaSetup)  # no CUDA here: the parts release needs
    setup.torch, setup.clocks = FakeTorch(), []
    clock = setup.kernel_clock(None)
    clock.samples(setup.torch.cuda.kernel, 0, 1)
    setup.release()
    assert clock.graph is None and setup.torch.cuda.emptied >= 2
    assert set_bytes_limit(80 << 30) == 60 << 30
    assert "launch excluded" in CudaSetup.timer


def profile(points: list[tuple[tuple[int, int, int, bool], float]]) -> dict:
    return {"device": "h100-sxm", "dtype": "fp16", "kinds": {"linear": {"points": [
        {"shape": {"m": m, "k": k, "n": n, "bias": bias}, "seconds": s} for (m, k, n, bias), s in points]}}}


SMALL = [(2, 512, n) for n in (128, 256, 512, 1024)] + [(16, 1024, 1024), (64, 512, 2048), (128, 256, 256)]


def public(extra: float = 0.0) -> dict:
    return profile([((m, k, n, False), 3e-6 + 1e-7 * i + extra) for i, (m, k, n) in enumerate(SMALL)])


def test_a_constant_excess_is_found_constant_and_recommended():
    ours = profile([((m, k, n, False), 3e-6 + 1e-7 * i + 2e-6) for i, (m, k, n) in enumerate(SMALL)])
    result = kernel_excess(ours, public())
    assert result["n"] == len(SMALL) and result["median_s"] == pytest.approx(2e-6)
    assert result["shape"] == "constant" and result["recommend"] == {RECOMMENDED_FIELD: pytest.approx(2e-6)}


def test_a_proportional_excess_is_found_proportional():
    ours = profile([((m, k, n, False), 1.4 * (3e-6 + 1e-6 * i)) for i, (m, k, n) in enumerate(SMALL)])
    reference = profile([((m, k, n, False), 3e-6 + 1e-6 * i) for i, (m, k, n) in enumerate(SMALL)])
    result = kernel_excess(ours, reference)
    assert result["shape"] == "proportional" and result["median_ratio"] == pytest.approx(1.4)


def test_the_other_bias_is_paired_with_the_bias_cost_taken_off():
    # Ours measured with a bias everywhere, and without one at two shapes: a bias costs 0.5 us.
    ours = profile([((m, k, n, True), 3e-6 + 1e-7 * i + 2.5e-6) for i, (m, k, n) in enumerate(SMALL)]
                   + [((m, k, n, False), 3e-6 + 1e-7 * i + 2e-6) for i, (m, k, n) in enumerate(SMALL[:2])])
    result = kernel_excess(ours, public())
    assert result["bias_cost_s"] == pytest.approx(0.5e-6) and result["median_s"] == pytest.approx(2e-6)
    assert result["pairs_other_bias"] == len(SMALL) - 2
    assert kernel_excess(ours, public(), correct_bias=False)["median_s"] == pytest.approx(2.5e-6)


def test_large_shapes_are_not_launch_bound_and_none_shared_is_an_error():
    big = profile([((16384, 4096, 4096, False), 7e-4)])
    with pytest.raises(ValueError, match="no launch-bound linear"):
        kernel_excess(big, big)
