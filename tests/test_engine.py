"""The engine on tiny scenarios whose answers are known by hand or from the describe path."""

import csv
import json

import pytest

from emulator.cost import runtime
from emulator.cost.costing import cost_model, stage_time
from emulator.engine.scenario import scenario_from_data
from emulator.engine.simulate import run_scenario
from workloads import build

A100 = "a100-sxm4-80gb"
SD_SMALL = {"image_size": 256, "steps": 4}


def scenario(traffic, policies, **extra):
    return scenario_from_data({"name": "t", "traffic": traffic, "policies": policies, **extra})


def one(workload="stable-diffusion", knobs=SD_SMALL, n=1, rate=1.0, **arrival):
    return {"name": "c", "workload": workload, "knobs": knobs, "max_requests": n,
            "arrival": {"process": "fixed", "rate_per_s": rate, **arrival}}


def run(tmp_path, traffic, policies, **extra):
    summaries = run_scenario(scenario(traffic, policies, **extra), tmp_path, trace=True)
    return {s["policy"]: s for s in summaries}


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def request_seconds(workload, knobs, device=A100, batch_scale=1, run_as="eager"):
    """A request's time by the describe path: the sum of its stages' costed calls under a runtime."""
    model = cost_model(device)
    pipeline = build(workload, **knobs)
    return sum(stage_time(s, model, s.batch * batch_scale, runtime(run_as))[1].seconds for s in pipeline.stages)


@pytest.mark.parametrize("workload,knobs", [("stable-diffusion", SD_SMALL),
                                            ("llama2-7b", {"prompt_tokens": 64, "output_tokens": 16})])
def test_a_lone_request_takes_the_sum_of_its_costed_stages(tmp_path, workload, knobs):
    out = run(tmp_path, [one(workload, knobs)], [{"policy": "fcfs"}, {"policy": "step-batch"},
                                                 {"policy": "pods", "pod_size": 2}])
    # a scenario naming no runtime runs autoregressive traffic under CUDA graphs, the rest eager
    expected = request_seconds(workload, knobs, run_as=scenario([one(workload, knobs)], [{"policy": "fcfs"}]).runtime)
    for name in ("fcfs", "step-batch", "pods"):
        (row,) = rows(tmp_path / name / "requests.csv")
        assert float(row["latency_s"]) == pytest.approx(expected, rel=1e-9), name
        assert out[name]["requests"] == {"arrived": 1, "completed": 1, "rejected": 0, "in_flight": 0}


def test_stages_placed_on_other_devices_add_up_the_same(tmp_path):
    groups = [{"name": "edges", "devices": 1, "stages": ["text_encoder", "vae_decoder"]},
              {"name": "unets", "devices": 2}]
    run(tmp_path, [one()], [{"policy": "fcfs"}], cluster={"groups": groups})
    (row,) = rows(tmp_path / "fcfs" / "requests.csv")
    assert float(row["latency_s"]) == pytest.approx(request_seconds("stable-diffusion", SD_SMALL), rel=1e-9)
    events = json.loads((tmp_path / "fcfs" / "trace.json").read_text())["traceEvents"]
    where = {e["name"]: e["pid"] for e in events if e["ph"] == "X"}
    assert where["text_encoder"] == where["vae_decoder"] == 0 and where["unet"] in (1, 2)


def test_a_static_batch_runs_its_members_together_at_the_batched_cost(tmp_path):
    run(tmp_path, [one(n=4, rate=1000.0)], [{"policy": "static-batch", "max_batch": 4, "window_s": 1.0}])
    done = [r for r in rows(tmp_path / "static-batch" / "requests.csv")]
    formed = max(float(r["arrival_s"]) for r in done)  # the batch forms when the fourth arrives
    expected = formed + request_seconds("stable-diffusion", SD_SMALL, batch_scale=4)
    assert len(done) == 4 and len({r["done_s"] for r in done}) == 1
    assert float(done[0]["done_s"]) == pytest.approx(expected, rel=1e-9)


def test_continuous_batching_lets_a_late_request_join_and_finish_sooner(tmp_path):
    knobs = {"image_size": 256, "steps": 40}
    out = run(tmp_path, [one(knobs=knobs, n=2, rate=2.0)], [{"policy": "fcfs"}, {"policy": "step-batch"}])
    fcfs = rows(tmp_path / "fcfs" / "requests.csv")
    step = rows(tmp_path / "step-batch" / "requests.csv")
    assert float(step[1]["done_s"]) < float(fcfs[1]["done_s"])
    assert out["step-batch"]["latency_s"]["p99"] < out["fcfs"]["latency_s"]["p99"]


def test_same_seed_gives_byte_identical_outputs(tmp_path):
    traffic = [{"name": "c", "workload": "stable-diffusion", "knobs": SD_SMALL,
                "arrival": {"process": "poisson", "rate_per_s": 3.0}}]
    policies = [{"policy": "step-batch"}, {"policy": "pods", "pod_size": 2, "stagger": 0.5}]
    for d in ("a", "b"):
        run(tmp_path / d, traffic, policies, horizon_s=5.0)
    for name in ("step-batch", "pods"):
        for f in ("summary.json", "requests.csv", "timeseries.csv"):
            assert (tmp_path / "a" / name / f).read_bytes() == (tmp_path / "b" / name / f).read_bytes()
    run(tmp_path / "c", traffic, policies, horizon_s=5.0, seed=7)
    assert (tmp_path / "c" / "pods" / "requests.csv").read_bytes() != (tmp_path / "a" / "pods" / "requests.csv").read_bytes()


def test_an_undrained_overload_leaves_requests_in_flight_and_counts_them(tmp_path):
    traffic = [{"name": "c", "workload": "stable-diffusion", "knobs": SD_SMALL,
                "arrival": {"process": "poisson", "rate_per_s": 40.0}}]
    out = run(tmp_path, traffic, [{"policy": "fcfs"}], horizon_s=3.0, drain=False)["fcfs"]
    n = out["requests"]
    assert n["in_flight"] > 0 and n["arrived"] == n["completed"] + n["rejected"] + n["in_flight"]
    statuses = [r["status"] for r in rows(tmp_path / "fcfs" / "requests.csv")]
    assert statuses.count("in_flight") == n["in_flight"] and len(statuses) == n["arrived"]


def test_kv_cache_memory_bounds_continuous_batching_and_never_overflows(tmp_path):
    # LLaMA-2-7B on a 24 GB L4: 13.5 GB of weights; each request's KV cache of 2560 positions is
    # 32 layers x 2 (K, V) x 4096 x 2 bytes x 2560 = 1.34 GB, so about seven fit, not the 64 allowed.
    chat = {"name": "chat", "workload": "llama2-7b", "knobs": {"prompt_tokens": 2048, "output_tokens": 512},
            "arrival": {"process": "poisson", "rate_per_s": 50.0}, "max_requests": 24}
    out = run(tmp_path, [chat], [{"policy": "step-batch", "max_batch": 64}], device="l4")["step-batch"]
    assert out["requests"]["completed"] == 24
    series = rows(tmp_path / "step-batch" / "timeseries.csv")
    assert all(float(r["memory_GB"]) <= float(r["capacity_GB"]) for r in series)
    assert out["peak_memory_GB"] <= 24.0
    assert out["peak_memory_GB"] > 24.0 - 2 * 1.35  # the KV limit, not the batch limit, was binding
    running = max(float(r["running"]) for r in series)
    assert running <= (24e9 - 13.5e9) / 1.34e9


def test_a_request_that_can_never_fit_is_rejected_with_its_reason(tmp_path):
    # 16 sequences of LLaMA-2's full 4096-token context: 16 x 4096 x 0.52 MB = 34.4 GB of KV cache, beyond an L4.
    huge = one("llama2-7b", {"batch": 16, "prompt_tokens": 2048, "output_tokens": 2048})
    out = run(tmp_path, [huge, {**one(), "name": "ok"}], [{"policy": "fcfs"}], device="l4")["fcfs"]
    assert out["requests"]["rejected"] == 1 and out["requests"]["completed"] == 1
    (reason,) = out["rejections"]
    assert "KV" in reason and "l4" in reason
    (row,) = [r for r in rows(tmp_path / "fcfs" / "requests.csv") if r["status"] == "rejected"]
    assert row["reason"] == reason


def slices(path):
    return [e for e in json.loads(path.read_text())["traceEvents"] if e["ph"] == "X"]


def test_buckets_batch_only_within_a_bucket_while_padding_mixes(tmp_path):
    sizes = (256, 512, 768)
    traffic = [{"name": f"sd{s}", "workload": "stable-diffusion", "knobs": {"image_size": s, "steps": 2},
                "arrival": {"process": "poisson", "rate_per_s": 6.0}, "max_requests": 6} for s in sizes]
    run(tmp_path, traffic, [
        {"name": "padded", "policy": "static-batch", "max_batch": 4, "window_s": 2.0, "pad": True},
        {"name": "buckets", "policy": "buckets", "edges": [1024, 4096], "max_batch": 4, "window_s": 2.0}])
    cls = {int(r["id"]): r["class"] for r in rows(tmp_path / "buckets" / "requests.csv")}
    for name, mixed in (("buckets", False), ("padded", True)):
        unet = [e for e in slices(tmp_path / name / "trace.json") if e["name"] == "unet"]
        classes = [{cls[i] for i in e["args"]["requests"]} for e in unet]
        assert any(len(c) > 1 for c in classes) == mixed, name


def test_closed_loop_users_never_have_more_than_one_request_each(tmp_path):
    users = {"name": "c", "workload": "stable-diffusion", "knobs": SD_SMALL,
             "arrival": {"process": "closed", "users": 3, "think_s": 0.2}}
    out = run(tmp_path, [users], [{"policy": "step-batch"}], horizon_s=6.0)["step-batch"]
    done = rows(tmp_path / "step-batch" / "requests.csv")
    for r in done:
        t = float(r["arrival_s"])
        live = sum(float(x["arrival_s"]) <= t < float(x["done_s"]) for x in done)
        assert live <= 3
    assert out["requests"]["completed"] == len(done) > 3


def test_a_trace_is_replayed_at_its_times(tmp_path):
    (tmp_path / "trace.csv").write_text("time_s,class\n0.5,c\n0.7,other\n1.25,c\n2.0,c\n")
    s = scenario_from_data({"name": "t", "policies": [{"policy": "fcfs"}], "traffic": [
        {"name": "c", "workload": "stable-diffusion", "knobs": SD_SMALL,
         "arrival": {"process": "trace", "path": "trace.csv"}}]}, base_dir=str(tmp_path))
    run_scenario(s, tmp_path / "out")
    assert [float(r["arrival_s"]) for r in rows(tmp_path / "out" / "fcfs" / "requests.csv")] == [0.5, 1.25, 2.0]


def test_poisson_arrivals_come_at_their_rate(tmp_path):
    traffic = [{"name": "c", "workload": "stable-diffusion", "knobs": SD_SMALL,
                "arrival": {"process": "poisson", "rate_per_s": 20.0}}]
    out = run(tmp_path, traffic, [{"policy": "static-batch", "max_batch": 16}], horizon_s=20.0)
    arrived = out["static-batch"]["requests"]["arrived"]
    assert abs(arrived - 400) < 4 * 20  # mean 400, standard deviation 20


def test_the_trace_has_a_track_per_stream_and_memory_and_bandwidth_counters(tmp_path):
    traffic = [{"name": "c", "workload": "stable-diffusion", "knobs": SD_SMALL,
                "arrival": {"process": "fixed", "rate_per_s": 20.0}, "max_requests": 4}]
    run(tmp_path, traffic, [{"policy": "pods", "pod_size": 2, "stagger": 0.5}])
    events = json.loads((tmp_path / "pods" / "trace.json").read_text())["traceEvents"]
    streams = {e["tid"] for e in events if e["ph"] == "X"}
    counters = {e["name"] for e in events if e["ph"] == "C"}
    assert streams == {0, 1} and counters == {"hbm_util_pct", "memory_GB"}
    calls = sum(e["args"]["calls"] for e in events if e["ph"] == "X")
    assert calls == 4 * (1 + 4 + 1)  # text encoder, 4 denoising steps, VAE decoder per request


def test_staggered_pod_members_keep_their_offset_in_the_denoising_loop(tmp_path):
    # Two requests arriving together: the second starts its UNet loop half a pass after the first.
    traffic = [{"name": "c", "workload": "stable-diffusion", "knobs": {"image_size": 256, "steps": 8},
                "arrival": {"process": "fixed", "rate_per_s": 1000.0}, "max_requests": 2}]
    run(tmp_path, traffic, [{"policy": "pods", "pod_size": 2, "stagger": 0.5}])
    events = json.loads((tmp_path / "pods" / "trace.json").read_text())["traceEvents"]
    unet = {}
    for e in events:
        if e["ph"] == "X" and e["name"] == "unet":
            unet.setdefault(e["tid"], []).append(e)
    a, b = sorted(unet.values(), key=lambda calls: calls[0]["ts"])
    pass_us = [e["dur"] for e in a]
    # while both loop, B's calls start half of A's (equally slowed) call after A's
    for ea, eb in zip(a[1:4], b[1:4]):
        assert (eb["ts"] - ea["ts"]) / ea["dur"] == pytest.approx(0.5, abs=0.02)
    assert len(pass_us) == len(b) == 8


def test_bucket_affinity_dedicates_a_device_to_each_bucket(tmp_path):
    traffic = [{"name": f"sd{s}", "workload": "stable-diffusion", "knobs": {"image_size": s, "steps": 2},
                "arrival": {"process": "poisson", "rate_per_s": 4.0}, "max_requests": 8} for s in (256, 512)]
    out = run(tmp_path, traffic, [{"name": "dedicated", "policy": "buckets", "edges": [1024],
                                   "router": "bucket-affinity"}], cluster={"devices": 2})
    assert out["dedicated"]["router"] == "bucket-affinity"
    cls = {int(r["id"]): r["class"] for r in rows(tmp_path / "dedicated" / "requests.csv")}
    devices = {}
    for e in slices(tmp_path / "dedicated" / "trace.json"):
        for i in e["args"]["requests"]:
            devices.setdefault(cls[i], set()).add(e["pid"])
    assert devices == {"sd256": {0}, "sd512": {1}}  # 256x256 has 1024 tokens: bucket 0; 512x512 4096: bucket 1
