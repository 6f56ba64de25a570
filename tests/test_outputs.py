"""What `run` leaves on disk and says: results appear whole or not at all, and failures name their file.

Each test names the case it guards (case 2: atomic output and Ctrl-C; case 3:
the scenario file in the error; case 4: where costs come from; case 6: bounded
memory). Ctrl-C is injected as a KeyboardInterrupt, not sent as a signal.
"""

import json
import time

import numpy as np
import pytest

from emulator.cli import main
from emulator.engine import metrics as metrics_module

SMALL = """name: small
horizon_s: 2
traffic:
  - {name: c, workload: stable-diffusion, knobs: {image_size: 256, steps: 2}, max_requests: 3,
     arrival: {process: fixed, rate_per_s: 4}}
policies:
  - {policy: fcfs}
  - {policy: step-batch}
"""
# Parti's 20B parameters (40 GB in fp16) on a 24 GB L4
TOO_LARGE = """name: big
device: l4
traffic:
  - {name: c, workload: parti, max_requests: 1, arrival: {process: fixed, rate_per_s: 1}}
policies:
  - {policy: fcfs}
"""


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A scratch working directory holding small.yaml and big.yaml."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL)
    (tmp_path / "big.yaml").write_text(TOO_LARGE)
    return tmp_path


def entries(folder):
    return sorted(p.name for p in folder.iterdir())


def test_case2_a_finished_run_publishes_every_file(work, capsys):
    assert main(["run", "small.yaml", "--out", "out"]) == 0
    assert entries(work) == ["big.yaml", "out", "small.yaml"]  # no staging folder left beside it
    assert entries(work / "out") == ["comparison.csv", "fcfs", "step-batch"]
    assert entries(work / "out" / "fcfs") == ["requests.csv", "summary.json", "timeseries.csv"]


def test_case2_a_rerun_replaces_its_own_entries_and_keeps_the_rest(work, capsys):
    (work / "out" / "fcfs").mkdir(parents=True)
    (work / "out" / "fcfs" / "stale.csv").write_text("old\n")
    (work / "out" / "notes.txt").write_text("mine\n")
    assert main(["run", "small.yaml", "--out", "out"]) == 0
    assert entries(work / "out") == ["comparison.csv", "fcfs", "notes.txt", "step-batch"]
    assert "stale.csv" not in entries(work / "out" / "fcfs")
    assert entries(work) == ["big.yaml", "out", "small.yaml"]


def test_case2_a_model_too_large_for_the_device_leaves_no_files(work, capsys):
    assert main(["run", "big.yaml", "--out", "out"]) == 2
    assert entries(work) == ["big.yaml", "small.yaml"]  # before: out/fcfs/ with header-only CSVs


def test_case2_ctrl_c_ends_at_once_with_one_line_and_no_results(work, capsys, monkeypatch):
    (work / "out").mkdir()
    (work / "out" / "comparison.csv").write_text("an earlier run's table\n")
    completed = metrics_module.Metrics.completed
    seen = []

    def interrupted_in_the_second_policy(self, r):
        seen.append(r.id)
        if len(seen) == 4:  # the first policy's three requests are written; Ctrl-C in the second
            seen.append(time.perf_counter())
            raise KeyboardInterrupt
        completed(self, r)

    monkeypatch.setattr(metrics_module.Metrics, "completed", interrupted_in_the_second_policy)
    assert main(["run", "small.yaml", "--out", "out"]) == 130
    assert time.perf_counter() - seen[-1] < 1.0
    err = capsys.readouterr().err
    assert err.splitlines() == ["interrupted: no results written"]
    assert entries(work) == ["big.yaml", "out", "small.yaml"]
    assert entries(work / "out") == ["comparison.csv"]  # the earlier run's results, untouched
    assert (work / "out" / "comparison.csv").read_text() == "an earlier run's table\n"


def test_case3_a_model_too_large_for_the_device_names_the_scenario_file(work, capsys):
    assert main(["run", "big.yaml", "--out", "out"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: big.yaml: cluster group all: the weights of the models it serves (")
    assert line.endswith("GB) exceed the l4's 24 GB")


def test_case4_a_run_says_per_device_where_its_kernel_times_come_from(work, capsys):
    placed = SMALL.replace("horizon_s: 2", "horizon_s: 2\ndevice: h100-sxm\ncluster:\n  groups:\n"
                           "    - {name: edges, stages: [text_encoder, vae_decoder], device: l4}\n"
                           "    - {name: unets}")
    (work / "placed.yaml").write_text(placed)
    assert main(["run", "placed.yaml", "--out", "out"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("kernel times on l4: derived profile calibration/profiles/l4.json (")
    assert out[2].startswith("kernel times on h100-sxm: measured profile calibration/profiles/h100-sxm.json (")
    summary = json.loads((work / "out" / "fcfs" / "summary.json").read_text())
    assert [(s["device"], s["source"]) for s in summary["cost_sources"]] == [("l4", "derived"),
                                                                             ("h100-sxm", "measured")]


# Case 6: metrics kept three floats per completed request in memory for the whole run.

def fake_request(i: int):
    from types import SimpleNamespace

    cls = SimpleNamespace(name=f"c{i % 3}", slo_s=1.0, ttft_slo_s=None, tpot_slo_s=None, has_slo=True,
                          tokens_out=0, pipeline=SimpleNamespace(workload="w"))
    return SimpleNamespace(id=i, cls=cls, arrival_s=float(i), first_start_s=i + 0.25, done_s=i + 0.5 + (i % 7) / 10,
                           first_token_s=None, last_token_s=None)


def traced_growth(n: int) -> int:
    """Peak traced bytes while a Metrics takes n completed requests and summarizes them."""
    import tracemalloc

    m = metrics_module.Metrics(None, 1.0, False)
    requests = (fake_request(i) for i in range(n))
    tracemalloc.start()
    for r in requests:
        m.arrived(r)
        m.completed(r)
    for spill in (m.latency, m.queueing, *m.per_class.values()):
        metrics_module.distribution(spill)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    m.close()
    return peak


def test_case6_metrics_memory_does_not_grow_with_the_requests(monkeypatch):
    monkeypatch.setattr(metrics_module, "IN_MEMORY", 1024)  # both summarized from their spill files in chunks
    monkeypatch.setattr(metrics_module, "SPILL_VALUES", 256)  # small buffers: their fill at the end is no noise
    monkeypatch.setattr(metrics_module, "CHUNK_VALUES", 512)
    traced_growth(2_000)  # numpy's first percentiles allocate for good
    small, large = traced_growth(2_000), traced_growth(20_000)
    assert large < small + 64_000, (small, large)  # before: +430 kB, three floats per request


VALUE_SETS = {
    "one": [3.5],
    "two": [2.0, 1.0],
    "ties": [1.0] * 500 + [2.0] * 300 + [0.0] * 201,
    "spread": list(np.random.default_rng(0).lognormal(0, 2, 3001)),
    "signed": list(np.random.default_rng(1).normal(0, 1, 777)) + [0.0, -0.0],
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
@pytest.mark.parametrize("in_memory", [64, 1 << 20])
def test_case6_streamed_percentiles_equal_numpys_exactly(monkeypatch, name, in_memory):
    monkeypatch.setattr(metrics_module, "SPILL_VALUES", 16)
    monkeypatch.setattr(metrics_module, "CHUNK_VALUES", 40)
    monkeypatch.setattr(metrics_module, "IN_MEMORY", in_memory)
    values = VALUE_SETS[name]
    spill = metrics_module.Spill()
    for v in values:
        spill.append(v)
    got = metrics_module.distribution(spill)
    spill.close()
    expected = np.percentile(np.array(values), [50, 90, 99])
    assert [got["p50"], got["p90"], got["p99"]] == [float(x) for x in expected]  # bit for bit
    assert got["mean"] == pytest.approx(float(np.mean(values)), rel=1e-12, abs=1e-15)


def test_case6_a_run_summarized_from_its_spill_files_has_the_same_summary(work, capsys, monkeypatch):
    assert main(["run", "small.yaml", "--out", "memory"]) == 0
    monkeypatch.setattr(metrics_module, "SPILL_VALUES", 1)
    monkeypatch.setattr(metrics_module, "CHUNK_VALUES", 2)
    monkeypatch.setattr(metrics_module, "IN_MEMORY", 2)
    assert main(["run", "small.yaml", "--out", "spilled"]) == 0
    for policy in ("fcfs", "step-batch"):
        a, b = (json.loads((work / d / policy / "summary.json").read_text()) for d in ("memory", "spilled"))
        for key in ("latency_s", "queueing_s"):
            assert {k: a[key][k] for k in ("p50", "p90", "p99")} == {k: b[key][k] for k in ("p50", "p90", "p99")}
            assert a[key]["mean"] == pytest.approx(b[key]["mean"], rel=1e-12)
