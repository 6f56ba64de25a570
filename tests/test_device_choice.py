"""The device-choice experiment: its CSV covers every GPU, and its times obey what the runtime and attention
models guarantee by construction."""

import csv

import pytest

from emulator.devices import catalog
from experiments import EXPERIMENTS, device_choice
from experiments.common import model

pytest.importorskip("matplotlib")

GPUS = [name for name, d in catalog().items() if d.kind == "gpu"]


@pytest.fixture(scope="module")
def result(experiment_results):
    return experiment_results[1][device_choice.NAME]


@pytest.fixture(scope="module")
def rows(result):
    with open(result.csvs[0]) as f:
        return list(csv.DictReader(f))


def times(rows, **match):
    """{(device, workload, attention, runtime): seconds per request} of the rows matching `match`."""
    return {(r["device"], r["workload"], r["attention"], r["runtime"]): float(r["time_per_request_s"])
            for r in rows if all(r[k] == v for k, v in match.items())}


def test_registered_and_writes_its_files(result):
    assert EXPERIMENTS[device_choice.NAME] is device_choice
    assert [p.name for p in result.csvs] == ["device-choice.csv"] and result.pngs[0].is_file()
    with open(result.csvs[0]) as f:
        assert tuple(next(csv.reader(f))) == device_choice.COLUMNS
    assert result.finding and result.table.count("\n") == len(GPUS) + 1


def test_every_gpu_and_no_cpu_with_each_workload_runtime_and_implementation(rows, result):
    assert {r["device"] for r in rows} == set(GPUS) and GPUS
    for device in GPUS:
        names = ("default",) + model(device, "default").implementations
        expected = {(w, a, rt) for w in device_choice.WORKLOADS for a in names for rt in ("eager", "cuda-graphs")}
        got = [(r["workload"], r["attention"], r["runtime"]) for r in rows if r["device"] == device]
        assert sorted(got) == sorted(expected), device
        assert f"`{device}`" in result.table


def test_time_shares_by_source_sum_to_one(rows):
    for r in rows:
        assert sum(float(r[s]) for s in device_choice.SHARES) == pytest.approx(1.0, abs=1e-9)


def test_cuda_graphs_never_slower_than_eager(rows):
    # Graphs end at launch + the kernels' sum; eager cannot end before its first op's dispatch + the same sum,
    # and that dispatch (host_s_per_op) is no shorter than the graph launch (host_s_per_kernel). Kernel times
    # do not depend on the runtime.
    for device in GPUS:
        m = model(device, "default")  # the cost model the experiment used
        assert m.host_s_per_kernel <= m.host_s_per_op, device
    eager, graphs = times(rows, runtime="eager"), times(rows, runtime="cuda-graphs")
    assert len(eager) == len(graphs) > 0
    for (device, workload, attention, _), t in eager.items():
        assert graphs[(device, workload, attention, "cuda-graphs")] <= t + 1e-9, (device, workload, attention)
    device_s = {}
    for r in rows:
        device_s.setdefault((r["device"], r["workload"], r["attention"]), set()).add(r["device_s"])
    assert all(len(v) == 1 for v in device_s.values())


def test_baseline_attention_never_faster_than_the_default_for_sd(rows):
    # Unfused attention writes and reads the similarity matrix through memory; fused kernels keep it on chip.
    sd = times(rows, workload="stable-diffusion")
    for (device, workload, attention, runtime), t in sd.items():
        if attention == "baseline":
            assert t >= sd[(device, workload, "default", runtime)], (device, runtime)


def test_default_resolves_to_an_implementation_the_device_has(rows):
    for r in rows:
        if r["attention"] == "default":
            resolved = dict(pair.split("=") for pair in r["attention_resolved"].split(";"))
            assert set(resolved.values()) <= set(model(r["device"], "default").implementations), r["device"]
