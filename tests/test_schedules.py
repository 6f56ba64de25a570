"""Per-call schedules: step caching and guidance on part of the steps, costed exactly in describe and the engine.

Reference values are hand sums over the full graph's ops (picked by name, not by the code under test) and
hand-counted tensor sizes from the model configs (FLUX.1: 3072 channels; Wan 2.1 14B: 5120).
"""

import csv

import pytest

from emulator.cost.costing import cost_model, stage_time
from emulator.describe import report
from emulator.engine.scenario import scenario_from_data
from emulator.engine.simulate import run_scenario
from emulator.errors import UserError
from emulator.ops import Op
from emulator.schedule_cost import scheduled_stage_time
from emulator.schedules import FULL, CallKind
from emulator.shapes import Elementwise
from workloads import build

A100 = "a100-sxm4-80gb"
FLUX = {"height": 256, "width": 256, "steps": 8}
TOKENS = 16 * 16 + 512  # FLUX at 256x256: a 32x32 latent packed into 16x16 tokens, plus 512 T5 tokens


@pytest.fixture(scope="module")
def model():
    return cost_model(A100)


def in_blocks(name: str, upto: int | None = None) -> bool:
    """Whether an op of the FLUX transformer lies in its block stacks (19 double, then 38 single blocks); with
    `upto`, in one of the first `upto` blocks."""
    parts = name.split(".")
    if parts[1] not in ("transformer_blocks", "single_transformer_blocks"):
        return False
    depth = int(parts[2]) + (19 if parts[1] == "single_transformer_blocks" else 0)
    return upto is None or depth < upto


def reuse_s(model, elements: int) -> float:
    """One elementwise add of the cached residual (bf16)."""
    return model.op_time(Op("reuse", Elementwise("add", elements, 2), "bf16"))


def test_a_schedule_computing_every_call_changes_nothing_in_describe(model):
    plain = report(build("flux1-dev", **FLUX), model)
    full = report(build("flux1-dev", cache="share=1", **FLUX), model)
    for key in ("time_per_request_s", "flops_per_request", "bytes_per_request", "peak_activation_bytes"):
        assert full[key] == plain[key], key
    (c,) = [c for c in full["components"] if c["name"] == "transformer"]
    assert c["call_kinds_share"] == {"full": 1.0} and c["cache_bytes"] == 0
    assert "quality is not modelled" in c["schedule"]


def test_skipping_half_the_calls_halves_the_stage_up_to_the_reuse_ops(model):
    stage = build("flux1-dev", cache="interval=2", **FLUX).stage("transformer")
    assert [k.depth for k in stage.schedule.kinds] == [FULL, 0] * 4
    full = stage.graph()
    outside_s = sum(model.op_time(op) for op in full.ops if not in_blocks(op.name))
    _, plain = stage_time(build("flux1-dev", **FLUX).stage("transformer"), model)
    _, cached = scheduled_stage_time(stage, model)
    expected = plain.device_s / 2 + 4 * (outside_s + reuse_s(model, TOKENS * 3072))
    assert cached.device_s == pytest.approx(expected, rel=1e-9)


def test_a_prefix_call_costs_its_first_blocks_plus_the_reuse(model):
    stage = build("flux1-dev", cache="list:full,prefix-2", **{**FLUX, "steps": 2}).stage("transformer")
    kept = [op for op in stage.graph().ops if not in_blocks(op.name) or in_blocks(op.name, upto=2)]
    graph = stage.call_graph(CallKind(2))
    assert [op.name for op in graph.ops if op.name != "transformer.cache.reuse"] == [op.name for op in kept]
    first, whole = scheduled_stage_time(stage, model)
    expected = first.device_s + sum(model.op_time(op) for op in kept) + reuse_s(model, TOKENS * 3072)
    assert whole.device_s == pytest.approx(expected, rel=1e-9)
    flops = stage.graph().totals.flops + sum(op.flops for op in kept) + TOKENS * 3072
    assert stage.request_totals().flops == flops


def test_the_cache_is_resident_memory_in_describe_and_the_engine(model):
    from emulator.engine.stepcost import StepCosts

    p = build("flux1-dev", cache="teacache-flux-0.4", **FLUX)
    stage = p.stage("transformer")
    hidden = TOKENS * 3072 * 2  # bf16 residual
    assert stage.cache_bytes() == 2 * hidden  # TeaCache: the residual and the previous modulated input
    assert report(p, model)["cache_bytes"] == 2 * hidden
    assert StepCosts(model).at(stage, stage.batch).resident_bytes == 2 * hidden
    assert "cache_bytes" not in report(build("flux1-dev", **FLUX), model)


def batched_pixart(**knobs):
    return build("pixart-sigma", height=256, width=256, steps=4, **knobs)


def test_guidance_on_part_of_the_steps_halves_those_calls_batch_or_calls(model):
    # batched: steps 0 and 1 guided at batch 2, steps 2 and 3 at batch 1
    stage = batched_pixart(cfg_steps="0:2").stage("transformer")
    assert stage.calls == 4 and [k.half for k in stage.schedule.kinds] == [False, False, True, True]
    plain = batched_pixart().stage("transformer")
    t2 = sum(model.op_time(op) for op in plain.graph(2).ops)
    t1 = sum(model.op_time(op) for op in plain.graph(1).ops)
    assert scheduled_stage_time(stage, model)[1].device_s == pytest.approx(2 * t2 + 2 * t1, rel=1e-9)
    assert stage.request_totals().flops == 2 * plain.graph(2).totals.flops + 2 * plain.graph(1).totals.flops
    # two-calls: 4 steps, the first guided: 5 calls of batch 1
    wan = build("wan2.1-t2v-1.3b", height=160, width=160, frames=9, steps=4, cfg_steps="0:1").stage("transformer")
    one = wan.graph(1)
    assert wan.calls == 5
    assert scheduled_stage_time(wan, model)[1].device_s == pytest.approx(
        5 * sum(model.op_time(op) for op in one.ops), rel=1e-9)


def test_bad_knobs_are_one_line_errors():
    with pytest.raises(UserError, match="cache 'nope' is not a preset"):
        build("flux1-dev", cache="nope", **FLUX)
    with pytest.raises(UserError, match="cfg_steps needs guidance run as batched or two-calls"):
        build("flux1-dev", cfg_steps="0:2", **FLUX)
    with pytest.raises(UserError, match="outside the 8 steps"):
        build("flux1-dev", guidance_mode="two-calls", cfg_steps="0:9", **FLUX)
    with pytest.raises(UserError, match="takes no --cache"):
        build("llama2-7b", cache="share=0.5")
    with pytest.raises(UserError, match="one per step"):
        build("flux1-dev", cache="list:full,skip", **FLUX)
    with pytest.raises(UserError, match="not below"):
        build("flux1-dev", cache="share=0.5,prefix=57", **FLUX)


def test_deepcache_keeps_the_outer_unet_level():
    stage = build("stable-diffusion", image_size=256, steps=6, cache="deepcache-3").stage("unet")
    graph = stage.call_graph(CallKind(1))
    levels = {op.name.split(".")[1] + "." + op.name.split(".")[2] for op in graph.ops
              if op.name.split(".")[1] in ("down", "up")}
    assert levels == {"down.0", "up.0"}
    assert [k.depth for k in stage.schedule.kinds] == [FULL, 1, 1, FULL, 1, 1]


# -- the engine ---------------------------------------------------------------------------------------


def run(tmp_path, knobs, policies, workload="flux1-dev", n=1, rate=1.0):
    traffic = [{"name": "c", "workload": workload, "knobs": knobs, "max_requests": n,
                "arrival": {"process": "fixed", "rate_per_s": rate}}]
    run_scenario(scenario_from_data({"name": "t", "traffic": traffic, "policies": policies}), tmp_path)
    return {p["policy"]: list(csv.DictReader(open(tmp_path / p["policy"] / "requests.csv"))) for p in policies}


POLICIES = [{"policy": "fcfs"}, {"policy": "step-batch"}, {"policy": "pods", "pod_size": 2}]


def test_the_engine_is_unchanged_by_a_schedule_computing_every_call(tmp_path):
    plain = run(tmp_path / "plain", FLUX, POLICIES, n=2, rate=4.0)
    full = run(tmp_path / "full", {**FLUX, "cache": "share=1"}, POLICIES, n=2, rate=4.0)
    for name in plain:
        assert [r["latency_s"] for r in full[name]] == [r["latency_s"] for r in plain[name]], name


def test_the_summary_names_each_class_schedule_and_only_where_one_is_set(tmp_path):
    import json

    run(tmp_path / "plain", FLUX, POLICIES[:1])
    assert "schedules" not in json.loads((tmp_path / "plain" / "fcfs" / "summary.json").read_text())
    run(tmp_path / "cached", {**FLUX, "cache": "interval=2"}, POLICIES[:1])
    named = json.loads((tmp_path / "cached" / "fcfs" / "summary.json").read_text())["schedules"]
    assert list(named) == ["c"] and "quality is not modelled" in named["c"]


def test_a_lone_cached_request_takes_its_described_time(tmp_path, model):
    knobs = {**FLUX, "cache": "interval=2,prefix=1"}
    expected = sum(scheduled_stage_time(s, model)[1].seconds for s in build("flux1-dev", **knobs).stages)
    for name, rows in run(tmp_path, knobs, POLICIES).items():
        assert float(rows[0]["latency_s"]) == pytest.approx(expected, rel=1e-9), name


def test_members_at_different_steps_are_costed_as_the_heaviest_kind_at_the_whole_batch(model):
    from emulator.engine.device import Batch
    from emulator.engine.policies.step_batch import RunningBatch, StepBatch
    from emulator.engine.request import Request, RequestClass
    from emulator.engine.stepcost import StepCosts

    p = build("flux1-dev", cache="interval=2", **FLUX)
    stage = p.stage("transformer")
    cls = RequestClass("c", 0, "k", p, None, stage, 0)
    a, b = Request(1, cls, 0.0), Request(2, cls, 0.0)
    policy = StepBatch(StepBatch.Params(), None)
    run_ = policy.running["k"] = RunningBatch(members=[a, b], size=2, ticks=5, origin={1: 0, 2: 2})
    for r in (a, b):
        r.stage = stage
    batch = Batch(run_.members, stage, 2)
    batch.key = "k"
    assert policy.positions(batch) == [5, 3]  # both at a skip: the call skips
    assert policy.call_kinds(batch) == {CallKind(0): 1}
    run_.origin[2] = 1  # b at call 4, a full one: the batch computes in full
    assert policy.call_kinds(batch) == {CallKind(): 1}
    at = StepCosts(model).at(stage, 2)
    plain = build("flux1-dev", **FLUX).stage("transformer")
    assert at.cost_of({CallKind(): 1})[0] == stage_time(plain, model, 2)[0].seconds


def test_a_cache_makes_fewer_requests_fit(tmp_path, model):
    # Wan 2.1 14B, 33 frames at 480x832: 9 x 30 x 52 = 14040 video tokens of 5120 channels (bf16). FORA keeps
    # the attention and MLP outputs of all 40 blocks, per guidance branch (two calls): 160 hidden states,
    # reserved while the request lives on the device. One request fits beside the weights, two do not.
    from emulator.engine.stepcost import StepCosts

    knobs = {"frames": 33, "steps": 4}
    cached = {**knobs, "cache": "fora-3"}
    stages = build("wan2.1-t2v-14b", **cached).stages
    cache = stages[1].cache_bytes()
    assert cache == 160 * 14040 * 5120 * 2
    costs = StepCosts(model)
    weights = sum(s.graph().totals.weight_bytes for s in stages)
    activation = max(costs.at(s, s.batch).activation_bytes for s in stages)
    assert weights + cache + activation <= model.device.memory_bytes < weights + 2 * cache
    policies = [{"policy": "step-batch", "max_batch": 4}]
    plain = run(tmp_path / "plain", knobs, policies, "wan2.1-t2v-14b", n=2, rate=1000.0)["step-batch"]
    fora = run(tmp_path / "fora", cached, policies, "wan2.1-t2v-14b", n=2, rate=1000.0)["step-batch"]
    assert [r["status"] for r in plain + fora] == ["completed"] * 4
    assert max(float(r["queueing_s"]) for r in plain) < 1.0  # both admitted at once
    first_done = min(float(r["done_s"]) for r in fora)
    assert max(float(r["first_start_s"]) for r in fora) >= first_done  # the second waits for the first to leave
