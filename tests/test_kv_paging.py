"""Paged KV under memory pressure: preemption happens, no request is lost, KV in use stays within the pool.

LLaMA-2-7B (multi-head attention: 32 layers x 2 x 32 heads x 128 x 2 bytes = 512 KiB of K and V per token,
counted from its Hugging Face config) on an L4 (24 GB): after 13.5 GB of weights about ten gigabytes hold some
twenty thousand positions, while 24 requests of 1024 + 512 tokens arriving at once would need 37k.
"""

import csv
import json

import pytest

from emulator.cost import cost_model, runtime
from emulator.engine.mixedstep import mixed_step
from emulator.engine.scenario import scenario_from_data
from emulator.engine.simulate import run_scenario
from emulator.engine.stepcost import StepCosts
from workloads import build

KV_PER_TOKEN = 32 * 2 * 32 * 128 * 2  # layers x (K, V) x heads x head_dim x fp16 bytes


def pressure(mode: str, **extra):
    c = {"name": "chat", "workload": "llama2-7b", "knobs": {"prompt_tokens": 1024, "output_tokens": 512},
         "max_requests": 24, "arrival": {"process": "poisson", "rate_per_s": 200}}
    return scenario_from_data({"name": "t", "device": "l4", "attention": "flash", "seed": 3, "horizon_s": 5,
                               "traffic": [c], "policies": [{"name": mode, "policy": "chunked-prefill",
                                                             "token_budget": 1024, "preemption": mode}], **extra})


def test_the_kv_per_token_is_the_models():
    p = build("llama2-7b", prompt_tokens=64, output_tokens=4)
    step = mixed_step(StepCosts(cost_model("l4"), runtime("cuda-graphs")), p.stage("prefill"), p.stage("decode"))
    assert step.kv_bytes_per_token == KV_PER_TOKEN


@pytest.mark.parametrize("mode", ["recompute", "swap"])
def test_under_pressure_requests_are_preempted_never_lost_and_kv_stays_in_the_pool(tmp_path, mode):
    """Both modes preempt; swap copies whole blocks over PCIe, recompute copies nothing."""
    (summary,) = run_scenario(pressure(mode), tmp_path, trace=True)
    n = summary["requests"]
    assert summary["preemptions"] > 0 and summary["preemptions_by_mode"] == {mode: summary["preemptions"]}
    assert n["arrived"] == 24 == n["completed"] + n["rejected"] + n["in_flight"] and n["completed"] == 24
    with open(tmp_path / mode / "timeseries.csv") as f:
        series = list(csv.DictReader(f))
    used = [float(r["kv_GB"]) for r in series]
    capacity = float(series[0]["kv_capacity_GB"])
    assert max(used) <= capacity and max(used) > 0.9 * capacity  # the pool fills, never overflows
    assert 9 < capacity < 10.5  # 24 GB less 13.5 GB of weights and the largest step's activations
    with open(tmp_path / mode / "requests.csv") as f:
        assert all(r["status"] == "completed" and float(r["tpot_s"]) > 0 for r in csv.DictReader(f))
    copies = [e for e in json.loads((tmp_path / mode / "trace.json").read_text())["traceEvents"]
              if e.get("name") == "kv-copy"]
    assert bool(copies) == (mode == "swap")  # recompute copies nothing
    one_way_Bps = 64e9 / 2  # the L4's PCIe 4.0 x16: 64 GB/s both ways (devices.json)
    block = 16 * KV_PER_TOKEN  # the default 16 positions per block
    for e in copies:  # whole blocks over one direction of the link
        blocks = e["dur"] * 1e-6 * one_way_Bps / block  # trace durations are in microseconds
        assert blocks == pytest.approx(round(blocks), abs=1e-6) and e["args"]["requests"]
