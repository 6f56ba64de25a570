"""The shipped mixed image/video DiT scenario (configs/dit-mixed.yaml): it loads as shipped, and a shortened
run through the API conserves requests (every arrival completes once drained) and serves videos slower
than images, each request no faster than it takes alone (the describe path's sum of stage calls)."""

from pathlib import Path

import pytest

from emulator import simulate
from emulator.cost.costing import cost_model, stage_time
from emulator.cost.runtime import runtime
from emulator.engine.scenario import load_scenario, read_yaml
from workloads import build

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dit-mixed.yaml"
VIDEO_CLASSES = {"wan-480p"}


def shortened(horizon_s: float = 300.0) -> dict:
    """The shipped scenario, load and seed unchanged, over a shorter horizon (a few videos arrive in it)."""
    data = read_yaml(CONFIG)
    data["horizon_s"] = horizon_s
    return data


@pytest.fixture(scope="module")
def result():
    return simulate(shortened())


def test_the_shipped_file_loads_with_image_and_video_dits_on_h100s_with_cuda_graphs():
    s = load_scenario(CONFIG)
    assert (s.device, s.runtime, s.drain) == ("h100-sxm", "cuda-graphs", True)
    assert {t.workload for t in s.traffic} == {"flux1-schnell", "flux1-dev", "wan2.1-t2v-1.3b"}
    assert len(s.policies) >= 3 and all(t.arrival.process == "poisson" for t in s.traffic)


def test_every_arrived_request_completes_when_draining(result):
    for row in result.summary.itertuples():
        assert row.arrived > 0 and row.completed == row.arrived, row.policy
        assert row.rejected == 0 and row.in_flight == 0, row.policy
    assert set(result.requests.status) == {"completed"}
    per_policy = result.requests.groupby("policy").id.nunique().to_dict()
    assert per_policy == dict(zip(result.summary.policy, result.summary.arrived))


def test_videos_take_longer_than_images(result):
    """Per policy: the typical video waits longer than the typical image of each class, and the fastest
    video (about its lone time, 97 s) takes over 15 times the fastest image (0.7 s and 4.6 s alone)."""
    for policy, reqs in result.requests.groupby("policy"):
        by_class = reqs.groupby("class").latency_s
        video = reqs[reqs["class"].isin(VIDEO_CLASSES)].latency_s
        images = [c for c in by_class.groups if c not in VIDEO_CLASSES]
        assert len(video) and images, policy
        for c in images:
            assert video.median() > by_class.get_group(c).median(), (policy, c)
            assert video.min() > 15 * by_class.get_group(c).min(), (policy, c)


def alone_seconds(workload: str, knobs: dict) -> float:
    """One request alone on an H100 with CUDA graphs: the sum of its stages' costed calls."""
    model = cost_model("h100-sxm")
    return sum(stage_time(s, model, s.batch, runtime("cuda-graphs"))[1].seconds
               for s in build(workload, **knobs).stages)


def test_no_request_finishes_faster_than_alone(result):
    for t in load_scenario(CONFIG).traffic:
        floor = alone_seconds(t.workload, t.knobs)
        latencies = result.requests[result.requests["class"] == t.name].latency_s
        assert latencies.min() >= floor * (1 - 1e-6), t.name
