"""Gang scheduling: planned stages on several GPUs at once, checked against the parallel package's own costs
and over whole runs (placement, exclusivity, memory, conservation, the adaptive policy's choices)."""

import csv
import json
from dataclasses import replace

import pytest

from emulator.cost.costing import cost_model, stage_time
from emulator.engine.scenario import scenario_from_data
from emulator.engine.simulate import run_scenario
from emulator.errors import UserError
from emulator.graph import OpGraph
from emulator.parallel.plan import parse_stage_plan
from emulator.parallel.stage import rank_stage, stage_summary, warmup_calls
from emulator.pipeline import Stage
from emulator.shapes import Collective
from workloads import build

H100 = "h100-sxm"
WAN = {"frames": 9, "height": 240, "width": 416, "steps": 2}  # 1170 tokens, 12 heads, guidance as two calls
SD = {"image_size": 256, "steps": 4}


def video(name="wan", plan=None, n=1, rate=1.0, **arrival):
    return {"name": name, "workload": "wan2.1-t2v-1.3b", "knobs": WAN, "max_requests": n,
            **({"parallel": {"transformer": plan}} if plan else {}),
            "arrival": {"process": "fixed", "rate_per_s": rate, **arrival}}


def image(n=1, rate=1.0):
    return {"name": "sd", "workload": "stable-diffusion", "knobs": SD, "max_requests": n,
            "arrival": {"process": "fixed", "rate_per_s": rate}}


def run(tmp_path, traffic, policies, cluster=None, **extra):
    s = scenario_from_data({"name": "t", "device": H100, "traffic": traffic, "policies": policies,
                            "cluster": cluster or {"devices": 1}, **extra})
    return {x["policy"]: x for x in run_scenario(s, tmp_path, trace=True)}


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def latencies(path):
    return [float(r["latency_s"]) for r in rows(path)]


def gang_slices(path):
    """(device, start, end, gang) of every call slice in a trace."""
    events = json.loads(path.read_text())["traceEvents"]
    return [(e["pid"], e["ts"], e["ts"] + e["dur"], tuple(e["args"]["gang"])) for e in events if e["ph"] == "X"]


def test_plans_of_one_gpu_reproduce_single_device_results_exactly(tmp_path):
    traffic = [video(n=4, rate=2.0), image(n=4, rate=3.0)]
    ones = [dict(t, parallel={"transformer": "ulysses=1"}) if t["name"] == "wan" else t for t in traffic]
    run(tmp_path / "plain", traffic, [{"policy": "fcfs"}, {"policy": "step-batch"}])
    run(tmp_path / "ones", ones, [{"policy": "fcfs"}, {"policy": "step-batch"}, {"policy": "gang"}])
    for policy in ("fcfs", "step-batch"):
        assert latencies(tmp_path / "ones" / policy / "requests.csv") == \
            latencies(tmp_path / "plain" / policy / "requests.csv"), policy
    # the gang policy on one device is first come, first served through each whole pipeline: fcfs exactly
    assert latencies(tmp_path / "ones" / "gang" / "requests.csv") == \
        latencies(tmp_path / "plain" / "fcfs" / "requests.csv")


@pytest.mark.parametrize("plan", ["cfg=2,ring=2", "ulysses=2,cfg=2", "ulysses=4", "pipefusion=2",
                                  "pipefusion=3,patches=4,cfg=2"])
def test_a_lone_request_on_a_gang_takes_the_rank_stage_time(tmp_path, plan):
    run(tmp_path, [video(plan=plan)], [{"policy": "gang"}], cluster={"devices": 8})
    (row,) = rows(tmp_path / "gang" / "requests.csv")
    # assembled from the parallel package: unplanned stages on one GPU, the transformer per rank (ring and
    # PipeFusion overlap taken off, PipeFusion's bubble added, as stage_summary counts them)
    model, p = cost_model(H100), parse_stage_plan(plan)
    pipeline = build("wan2.1-t2v-1.3b", **WAN)
    mode = pipeline.params["guidance_mode"]
    expected = 0.0
    for s in pipeline.stages:
        if s.name == "transformer":
            rank = rank_stage(s, p, mode)
            summary = stage_summary(s, rank, p, model, warmup_calls=warmup_calls(pipeline, rank))
            assert (summary["pipeline_bubble_s"] > 0) == (p.pipefusion > 1)
            expected += summary["per_rank_s"]
        else:
            expected += stage_time(s, model)[1].seconds
    assert float(row["latency_s"]) == pytest.approx(expected, rel=1e-9)
    assert int(row["gang"]) == p.degree
    lanes = {pid for pid, *_ in gang_slices(tmp_path / "gang" / "trace.json")}
    assert lanes == set(range(p.degree))  # the transformer's calls show on every rank's lane


def test_gangs_keep_to_nodes_never_share_a_device_and_fit_memory(tmp_path):
    traffic = [video("node", "cfg=2,ulysses=2", n=12, rate=6.0), video("span", "cfg=2,ulysses=3", n=6, rate=3.0),
               image(n=12, rate=6.0)]
    out = run(tmp_path, traffic, [{"policy": "gang"}, {"policy": "gang", "name": "strict", "backfill": False}],
              cluster={"nodes": 3, "gpus_per_node": 4}, horizon_s=3.0, drain=False)
    for name, summary in out.items():
        n = summary["requests"]
        assert n["arrived"] == n["completed"] + n["rejected"] + n["in_flight"]
        assert n["completed"] > 0
        assert summary["peak_memory_GB"] <= summary["memory_capacity_GB"]
        for r in rows(tmp_path / name / "timeseries.csv"):
            assert float(r["memory_GB"]) <= float(r["capacity_GB"])
        slices = gang_slices(tmp_path / name / "trace.json")
        gangs = {g for *_, g in slices}
        assert {len(g) for g in gangs} >= {4, 6}
        for g in gangs:
            nodes = [d // 4 for d in g]
            if len(g) <= 4:
                assert len(set(nodes)) == 1, g  # a gang that fits a node stays in one
            else:  # spread over nodes in shares of ulysses = 3 devices
                assert len(set(nodes)) > 1 and all(nodes.count(x) % 3 == 0 for x in set(nodes)), g
        by_device = {}
        for pid, start, end, g in slices:
            by_device.setdefault(pid, []).append((start, end))
        for spans in by_device.values():
            spans.sort()
            assert all(a[1] <= b[0] + 1e-3 for a, b in zip(spans, spans[1:]))  # one call at a time (us)


def test_backfilling_never_delays_the_oldest_waiting_request(tmp_path):
    # four one-GPU images fill two of four GPUs... then a 4-GPU video waits; later images may only backfill
    traffic = [image(n=6, rate=20.0), video("big", "ulysses=4")]
    traffic[1]["arrival"] = {"process": "trace", "path": "big.csv"}
    del traffic[1]["max_requests"]
    (tmp_path / "big.csv").write_text("time_s\n0.12\n")
    s = scenario_from_data({"name": "t", "device": H100, "traffic": traffic, "cluster": {"devices": 4},
                            "policies": [{"policy": "gang"}, {"policy": "gang", "name": "strict", "backfill": False}]},
                           str(tmp_path))
    run_scenario(s, tmp_path / "out")
    big = {name: next(r for r in rows(tmp_path / "out" / name / "requests.csv") if r["class"] == "big")
           for name in ("gang", "strict")}
    assert float(big["gang"]["first_start_s"]) == float(big["strict"]["first_start_s"])
    strict = rows(tmp_path / "out" / "strict" / "requests.csv")
    starts = [float(r["first_start_s"]) for r in sorted(strict, key=lambda r: float(r["arrival_s"]))]
    assert starts == sorted(starts)  # without backfilling, strictly in order of arrival


def test_the_adaptive_policy_picks_wider_gangs_when_idle(tmp_path):
    policy = [{"policy": "gang-adaptive", "tokens_per_gpu": 512}]
    run(tmp_path / "idle", [video(n=1)], policy, cluster={"devices": 8})
    run(tmp_path / "busy", [video(n=16, rate=1000.0)], policy, cluster={"devices": 8})
    (idle,) = rows(tmp_path / "idle" / "gang-adaptive" / "requests.csv")
    busy = [int(r["gang"]) for r in rows(tmp_path / "busy" / "gang-adaptive" / "requests.csv")]
    assert int(idle["gang"]) == 4  # 2 x 1170 tokens / 512 per GPU: at most 4
    assert min(busy) == 1 and sum(busy) / len(busy) < 4


@pytest.mark.parametrize("change,match", [
    ({"traffic": [video(plan="ulysses=2")], "policies": [{"policy": "fcfs"}], "cluster": {"devices": 2}},
     r"policies\[0\]\.policy: fcfs runs every stage on one device.*gang, gang-adaptive"),
    ({"traffic": [dict(video(), parallel={"unet": "ulysses=2"})]},
     r"traffic\[0\]\.parallel\.unet: no such stage.*text_encoder, transformer, vae_decoder"),
    ({"traffic": [video(plan="ulysses=5")]}, r"traffic\[0\]\.parallel\.transformer: .*heads"),
    ({"traffic": [video(plan="ulysses=4")], "cluster": {"devices": 8, "gpus_per_node": 2}},
     r"traffic\[0\]\.parallel\.transformer: ulysses=4: ulysses x tensor = 4 .* node of 2"),
    ({"traffic": [video(plan="tensor=2,ulysses=2")], "cluster": {"devices": 2}},
     r"needs 4 GPUs; the group has 2"),
    ({"traffic": [video(plan="ulysses=two")]}, r"traffic\[0\]\.parallel\.transformer: ulysses must be"),
    ({"cluster": {"nodes": 2, "groups": [{"name": "a"}]}}, r"cluster\.nodes: is for a cluster without groups"),
])
def test_bad_plans_and_topologies_are_one_line_errors(change, match):
    data = {"name": "t", "device": H100, "traffic": [video()], "policies": [{"policy": "gang"}], **change}
    with pytest.raises(UserError, match=match):
        scenario_from_data(data)


def test_a_gang_across_nodes_costs_its_cfg_gather_on_the_network(tmp_path):
    # cfg=2 x ulysses=2 on nodes of 2 GPUs: the Ulysses pairs stay in a node, the CFG all-gather crosses
    plan = "cfg=2,ulysses=2"
    run(tmp_path / "one", [video(plan=plan)], [{"policy": "gang"}], cluster={"devices": 4})
    run(tmp_path / "two", [video(plan=plan)], [{"policy": "gang"}], cluster={"devices": 4, "gpus_per_node": 2})
    (one,), (two,) = (rows(tmp_path / x / "gang" / "requests.csv") for x in ("one", "two"))
    # by hand: the rank graph with the CFG pair's all-gather flagged cross-node
    model, p = cost_model(H100), parse_stage_plan(plan)
    pipeline = build("wan2.1-t2v-1.3b", **WAN)
    rank = rank_stage(pipeline.stages[1], p, pipeline.params["guidance_mode"])
    g = rank.graph()
    ops = [replace(op, shape=replace(op.shape, cross_node=True)) if ".cfg." in op.name else op for op in g.ops]
    assert sum(isinstance(op.shape, Collective) and op.shape.cross_node for op in ops) == 1
    crossed = Stage(rank.name, "", lambda n: OpGraph(ops, g.structure), rank.calls, rank.batch)
    delta = stage_time(crossed, model)[1].seconds - stage_time(rank, model)[1].seconds
    assert delta > 0
    assert float(two["latency_s"]) - float(one["latency_s"]) == pytest.approx(delta, rel=1e-6)
    widest = max((g for *_, g in gang_slices(tmp_path / "two" / "gang" / "trace.json")), key=len)
    assert {d // 2 for d in widest} == {0, 1}  # the transformer's ranks on both nodes


def test_nodes_make_devices_and_a_groups_plan_applies_to_its_classes():
    s = scenario_from_data({"name": "t", "device": H100, "traffic": [video()], "policies": [{"policy": "gang"}],
                            "cluster": {"nodes": 3, "gpus_per_node": 4}})
    assert s.groups[0].devices == 12 and s.groups[0].gpus_per_node == 4
    from emulator.engine.scenario import node_gpus
    from emulator.engine.topology import node_size, stage_plans

    assert node_size(s, s.groups[0], lambda spec: node_gpus(s, spec)) == 4
    grouped = scenario_from_data({"name": "t", "device": H100, "traffic": [video()], "policies": [{"policy": "gang"}],
                                  "cluster": {"groups": [{"name": "g", "devices": 8,
                                                          "parallel": {"transformer": "ulysses=2"}}]}})
    assert node_size(grouped, grouped.groups[0], lambda spec: node_gpus(grouped, spec)) == 8  # the catalog's
    assert stage_plans(grouped, grouped.traffic[0])["transformer"] == parse_stage_plan("ulysses=2")
    own = scenario_from_data({"name": "t", "device": H100, "traffic": [video(plan="cfg=2")],
                              "policies": [{"policy": "gang"}],
                              "cluster": {"groups": [{"name": "g", "devices": 8,
                                                      "parallel": {"transformer": "ulysses=2"}}]}})
    assert stage_plans(own, own.traffic[0])["transformer"] == parse_stage_plan("cfg=2")  # the class's wins
