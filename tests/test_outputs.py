"""What `run` leaves on disk and says: results appear whole or not at all, and failures name their file.

Each test names the case it guards (case 2: atomic output and Ctrl-C; case 3:
the scenario file in the error; case 4: where costs come from; case 6: bounded
memory). Ctrl-C is injected as a KeyboardInterrupt, not sent as a signal.
"""

import json
import time

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
                           "    - {name: edges, stages: [text_encoder, vae_decoder], device: h200}\n"
                           "    - {name: unets}")
    (work / "placed.yaml").write_text(placed)
    assert main(["run", "placed.yaml", "--out", "out"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("kernel times on h200: datasheet roofline, uncalibrated")
    assert out[2].startswith("kernel times on h100-sxm: measured profile calibration/profiles/h100-sxm.json (")
    summary = json.loads((work / "out" / "fcfs" / "summary.json").read_text())
    assert [(s["device"], s["source"]) for s in summary["cost_sources"]] == [("h200", "roofline"),
                                                                             ("h100-sxm", "measured")]
