"""The runtime as a costing input: eager (op-by-op dispatch) against cuda-graphs (one launch per call), by hand."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import workloads
from emulator.cost import RUNTIMES, cost_model, runtime, stage_time
from emulator.cost.runtime import CUDA_GRAPHS, EAGER
from emulator.cost.timeline import GraphCoster
from emulator.engine.scenario import scenario_from_data
from emulator.engine.simulate import run_scenario
from emulator.errors import UserError
from tests.test_cost import A100, FixedCost, chain

ROOT = Path(__file__).parents[1]
LLAMA = {"prompt_tokens": 16, "output_tokens": 4}


def test_the_registry_holds_eager_and_cuda_graphs_and_names_the_choices():
    assert RUNTIMES["eager"] is EAGER and RUNTIMES["cuda-graphs"] is CUDA_GRAPHS
    assert runtime("cuda-graphs") is CUDA_GRAPHS
    with pytest.raises(UserError, match="unknown runtime 'jit'; choose one of: eager, cuda-graphs"):
        runtime("jit")


@pytest.mark.parametrize("n,d,h", [(10, 1e-6, 5e-6), (50, 2e-6, 8e-5)])
def test_a_chain_of_tiny_kernels_by_hand(n, d, h):
    g = chain(n)
    model = FixedCost(d, h)  # host h per op, and h for a bare dispatch (the graph launch)
    eager = GraphCoster(g, model, False).call()
    assert eager.seconds == pytest.approx(n * h + d)  # host-bound: the last kernel starts at n x h
    graphs = GraphCoster(g, model, False, CUDA_GRAPHS).call()
    assert graphs.seconds == pytest.approx(h + n * d)  # one launch, then the kernels back to back
    assert graphs.device_s == eager.device_s == pytest.approx(n * d)  # kernel times are the model's in both
    assert graphs.host_idle_s == pytest.approx(h)


def test_big_kernels_hide_the_host_in_either_runtime():
    g = chain(10)
    model = FixedCost(1e-3, 5e-6)
    eager = GraphCoster(g, model, False).call().seconds
    graphs = GraphCoster(g, model, False, CUDA_GRAPHS).call().seconds
    assert eager == pytest.approx(graphs) == pytest.approx(5e-6 + 10e-3)


def test_the_default_is_eager():
    decode = workloads.build("llama2-7b", **LLAMA).stage("decode")
    model = cost_model("a100-sxm4-80gb")
    assert stage_time(decode, model) == stage_time(decode, model, runtime=EAGER)


def test_llama_decode_on_the_a100_with_cuda_graphs_is_near_weight_streaming():
    decode = workloads.build("llama2-7b").stage("decode")  # batch 1
    model = cost_model("a100-sxm4-80gb")
    eager = stage_time(decode, model)[0]
    graphs = stage_time(decode, model, runtime=CUDA_GRAPHS)[0]
    weights = decode.graph().totals.weight_bytes  # 6.7e9 params x 2 bytes
    bound = weights / A100.bytes_per_s  # ~6.6 ms
    assert 6.4e-3 < bound < 6.8e-3
    assert eager.seconds > 25e-3  # host-bound: 484 ops x 67.4 us
    assert bound <= graphs.seconds < eager.seconds / 2
    assert graphs.seconds == pytest.approx(graphs.device_s + model.host_s_per_kernel)


def test_a_cpu_has_no_graphs_to_launch():
    model = cost_model("cpu")
    stage = workloads.build("llama2-7b", **LLAMA, dtype="fp32").stage("decode")
    with pytest.raises(UserError, match="runtime cuda-graphs needs a device with its own host"):
        stage_time(stage, model, runtime=CUDA_GRAPHS)
    stage_time(stage, model)  # eager is fine


def cli(*args):
    return subprocess.run([sys.executable, "-m", "emulator", *args], capture_output=True, text=True, cwd=ROOT)


def test_describe_takes_runtime_and_says_which():
    knobs = ["--prompt-tokens", "16", "--output-tokens", "4"]
    eager = cli("describe", "llama2-7b", *knobs)
    assert eager.returncode == 0 and "(causal flash, decode flash), eager runtime" in eager.stdout
    graphs = cli("describe", "llama2-7b", *knobs, "--runtime", "cuda-graphs", "--json")
    assert graphs.returncode == 0 and json.loads(graphs.stdout)["runtime"] == "cuda-graphs"
    assert "runtime" not in json.loads(cli("describe", "llama2-7b", *knobs, "--json").stdout)  # eager: unchanged
    for args, message in [(["--runtime", "jit"], "unknown runtime 'jit'; choose one of: eager, cuda-graphs"),
                          (["--runtime", "cuda-graphs", "--device", "cpu", "--dtype", "fp32"],
                           "runtime cuda-graphs needs a device with its own host")]:
        bad = cli("describe", "llama2-7b", *knobs, *args)
        assert bad.returncode == 2 and message in bad.stderr and bad.stderr.count("\n") == 1


def scenario(**extra):
    traffic = [{"name": "chat", "workload": "llama2-7b", "knobs": LLAMA, "max_requests": 1,
                "arrival": {"process": "fixed", "rate_per_s": 1.0}}]
    return scenario_from_data({"name": "t", "traffic": traffic, "policies": [{"policy": "fcfs"}], **extra})


def test_a_scenario_names_its_runtime_and_a_bad_one_lists_the_choices():
    # LLaMA decodes autoregressively: without a runtime named it runs under CUDA graphs (serving's default)
    assert scenario().runtime == "cuda-graphs" and scenario(runtime="eager").runtime == "eager"
    with pytest.raises(UserError, match=r"runtime: must be one of 'eager', 'cuda-graphs', got 'jit'"):
        scenario(runtime="jit")
    with pytest.raises(UserError, match="runtime: runtime cuda-graphs needs a device with its own host"):
        scenario(runtime="cuda-graphs", device="cpu")


def test_the_engine_costs_calls_under_the_scenario_runtime(tmp_path):
    model = cost_model("a100-sxm4-80gb")
    stages = workloads.build("llama2-7b", **LLAMA).stages
    for name, rt in RUNTIMES.items():
        (summary,) = run_scenario(scenario(runtime=name), tmp_path / name)
        with open(tmp_path / name / "fcfs" / "requests.csv") as f:
            (row,) = list(csv.DictReader(f))
        expected = sum(stage_time(s, model, runtime=rt)[1].seconds for s in stages)
        assert float(row["latency_s"]) == pytest.approx(expected, rel=1e-9)
        assert summary.get("runtime", "eager") == name
