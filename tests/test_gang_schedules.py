"""Step-caching schedules on parallel ranks and gangs, and PipeFusion's per-rank weights in the engine.

Reference values are assembled by hand from the parallel package's rank graph and `emulator.call_graphs`
(a skip call is the rank graph with its block stack replaced by the reuse add), not from the rank stage's
schedule, which is what is under test."""

import csv
import json
from types import SimpleNamespace

import pytest

from emulator.call_graphs import partial_graph
from emulator.cli import main
from emulator.cost.costing import cost_model, stage_time
from emulator.cost.timeline import GraphCoster
from emulator.engine.gangs import GangSetup, gang_weights_bytes
from emulator.engine.policies.gang import Gang, plan_for
from emulator.engine.rank_stages import RankStages
from emulator.engine.scenario import scenario_from_data
from emulator.engine.simulate import Context, run_scenario
from emulator.engine.topology import stage_plans
from emulator.errors import UserError
from emulator.parallel.plan import parse_stage_plan
from emulator.parallel.stage import rank_stage
from workloads import build

H100 = "h100-sxm"
WAN = {"frames": 9, "height": 240, "width": 416, "steps": 4}  # 1170 tokens, 12 heads, guidance as two calls


def lone_latency(tmp_path, plan: str, **knobs) -> float:
    traffic = [{"name": "wan", "workload": "wan2.1-t2v-1.3b", "knobs": {**WAN, **knobs}, "max_requests": 1,
                "parallel": {"transformer": plan}, "arrival": {"process": "fixed", "rate_per_s": 1.0}}]
    s = scenario_from_data({"name": "t", "device": H100, "traffic": traffic, "policies": [{"policy": "gang"}],
                            "cluster": {"devices": 8}})
    run_scenario(s, tmp_path)
    with open(tmp_path / "gang" / "requests.csv") as f:
        (row,) = list(csv.DictReader(f))
    return float(row["latency_s"])


@pytest.mark.parametrize("plan", ["ulysses=2", "cfg=2", "pipefusion=2"])
def test_a_schedule_that_computes_every_call_changes_nothing_on_a_gang(tmp_path, plan):
    plain = lone_latency(tmp_path / "plain", plan)
    assert lone_latency(tmp_path / "all", plan, cache="share=1") == plain


def by_hand(plan: str, full_calls: int, skip_calls: int) -> float:
    """The request's time: unplanned stages on one GPU, the transformer's rank graph for its full calls and
    its skip graph (blocks replaced by the reuse add) for the rest; no ring, so nothing is hidden."""
    model = cost_model(H100)
    pipeline = build("wan2.1-t2v-1.3b", **WAN)  # no schedule
    total = 0.0
    for s in pipeline.stages:
        if s.name != "transformer":
            total += stage_time(s, model)[1].seconds
            continue
        g = rank_stage(s, parse_stage_plan(plan), pipeline.params["guidance_mode"]).graph()
        full = GraphCoster(g, model, model.device.synchronous).call().seconds
        skip = GraphCoster(partial_graph(g, 0, "transformer"), model, model.device.synchronous).call().seconds
        assert skip < full / 5
        total += full_calls * full + skip_calls * skip
    return total


@pytest.mark.parametrize("plan,full,skip", [
    ("ulysses=2", 4, 4),  # 4 steps x 2 guidance calls, steps 0 and 2 computed
    ("ulysses=2,cfg=2", 2, 2),  # each rank runs one call of every step's pair
])
def test_a_schedule_skipping_half_the_calls_gives_the_hand_assembled_rank_time(tmp_path, plan, full, skip):
    latency = lone_latency(tmp_path, plan, cache="list:full,skip,full,skip")
    assert latency == pytest.approx(by_hand(plan, full, skip), rel=1e-9)
    assert latency < lone_latency(tmp_path / "plain", plan)


def test_describe_parallel_with_a_cache_reports_the_cached_rank_time(capsys):
    args = ["describe", "wan2.1-t2v-1.3b", "--frames", "9", "--height", "240", "--width", "416", "--steps", "4",
            "--device", H100, "--parallel", "transformer:ulysses=2", "--json"]
    assert main(args + ["--cache", "list:full,skip,full,skip"]) == 0
    cached = json.loads(capsys.readouterr().out)["parallel"]
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)["parallel"]
    (stage,) = cached["stages"]
    rest = by_hand("ulysses=2", 0, 0)  # the unplanned stages alone
    assert stage["per_rank_s"] == pytest.approx(by_hand("ulysses=2", 4, 4) - rest, rel=1e-9)
    assert stage["per_rank_s"] < plain["stages"][0]["per_rank_s"]
    assert cached["per_request_s"] == pytest.approx(by_hand("ulysses=2", 4, 4), rel=1e-9)


def test_the_engine_holds_describes_per_rank_weights_under_pipefusion(capsys):
    plan = "pipefusion=2,patches=4"
    s = scenario_from_data({"name": "t", "device": H100, "policies": [{"policy": "gang"}], "cluster": {"devices": 2},
                            "traffic": [{"name": "wan", "workload": "wan2.1-t2v-1.3b", "knobs": WAN,
                                         "parallel": {"transformer": plan}, "max_requests": 1,
                                         "arrival": {"process": "fixed", "rate_per_s": 1.0}}]})
    ctx = Context(s)
    stages = RankStages()
    setup = GangSetup(Gang(Gang.Params()), (stage_plans(s, s.traffic[0]),), stages)
    only_transformer = SimpleNamespace(group_of=lambda name: 0 if name == "transformer" else 1)
    engine = gang_weights_bytes(only_transformer, 0, ctx.classes, setup, 8, 2)
    assert main(["describe", "wan2.1-t2v-1.3b", "--frames", "9", "--height", "240", "--width", "416",
                 "--steps", "4", "--device", H100, "--parallel", f"transformer:{plan}", "--json"]) == 0
    (described,) = json.loads(capsys.readouterr().out)["parallel"]["stages"]
    assert engine == described["memory_per_rank"]["weight_bytes"]
    # the rank graph's own total counts each layer's weights once per patch: about 4 times the layers' share
    rank = rank_stage(ctx.classes[0].pipeline.stage("transformer"), parse_stage_plan(plan), "two-calls")
    assert rank.graph().totals.weight_bytes > 3 * engine


@pytest.mark.parametrize("plan,knobs,match", [
    ("cfg=2", {"cfg_steps": "0:2"}, r"transformer: cfg=2 .* needs guidance on every step; .*guidance on steps 0:2"),
    ("pipefusion=2", {"cache": "fbcache-wan-0.06"}, r"transformer: pipefusion=2 with a cache that computes part"),
])
def test_schedules_a_plan_cannot_run_are_one_line_errors(plan, knobs, match):
    data = {"name": "t", "device": H100, "policies": [{"policy": "gang"}], "cluster": {"devices": 2},
            "traffic": [{"name": "wan", "workload": "wan2.1-t2v-1.3b", "knobs": {**WAN, **knobs},
                         "parallel": {"transformer": plan}, "arrival": {"process": "fixed", "rate_per_s": 1.0}}]}
    with pytest.raises(UserError, match=r"traffic\[0\]\.parallel\.transformer: " + match) as e:
        scenario_from_data(data)
    assert "\n" not in str(e.value)


def test_the_adaptive_policy_pairs_no_cfg_ranks_where_guidance_skips_steps(tmp_path):
    knobs = {**WAN, "cfg_steps": "0:2"}
    stage = build("wan2.1-t2v-1.3b", **knobs).stage("transformer")
    assert plan_for(stage, 4, "two-calls", "sequence", 8, 4) == parse_stage_plan("ulysses=4")
    assert plan_for(build("wan2.1-t2v-1.3b", **WAN).stage("transformer"), 4, "two-calls", "sequence", 8, 4) == \
        parse_stage_plan("cfg=2,ulysses=2")
    traffic = [{"name": "wan", "workload": "wan2.1-t2v-1.3b", "knobs": knobs, "max_requests": 1,
                "arrival": {"process": "fixed", "rate_per_s": 1.0}}]
    s = scenario_from_data({"name": "t", "device": H100, "traffic": traffic, "cluster": {"devices": 4},
                            "policies": [{"policy": "gang-adaptive", "tokens_per_gpu": 512}]})
    run_scenario(s, tmp_path)
    with open(tmp_path / "gang-adaptive" / "requests.csv") as f:
        (row,) = list(csv.DictReader(f))
    assert int(row["gang"]) == 4  # 2 passes x 1170 tokens / 512 per GPU: 4
