"""Sweeps: expansion, identical tables from a process pool, in-process and Ray, failed runs, resuming."""

import subprocess
import sys
import time

import pytest
import yaml

from emulator import simulate, sweep
from emulator.engine.sweep import SweepFile, expand, split_path
from emulator.engine.sweep_plots import pareto_front

BASE = {
    "name": "small", "seed": 1, "horizon_s": 3.0,
    "traffic": [{"name": "sd", "workload": "stable-diffusion", "knobs": {"image_size": 256, "steps": 2},
                 "arrival": {"process": "poisson", "rate_per_s": 2.0}}],
    "policies": [{"policy": "fcfs"}, {"name": "pods", "policy": "pods", "pod_size": 2, "stagger": 0.5}],
}


def write_sweep(tmp_path, axes, **extra):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "base": "base.yaml", "axes": axes, **extra}))
    return path


def test_axes_expand_into_numbered_runs():
    s = SweepFile("s", "b.yaml", {"a": (1, 2, 3), "b": ("x", "y")}, seeds=(1, 2))
    runs = expand(s)
    assert len(runs) == 12 and [r.run_id for r in runs] == list(range(12))
    assert runs[1].values == (("a", 1), ("b", "x")) and runs[1].seed == 2
    picked = expand(SweepFile("s", "b.yaml", {"a": (1, 2, 3), "b": ("x", "y")}, sampling="random", count=4))
    assert len(picked) == 4 and len({r.values for r in picked}) == 4
    assert split_path("policies[1].stagger") == ["policies", 1, "stagger"]


def test_pareto_front_by_hand():
    # (throughput, p99): (3, 9) and (1, 1) are on the front; (2, 9.5) and (0.5, 2) are beaten
    assert sorted(pareto_front([(3, 9), (2, 9.5), (1, 1), (0.5, 2)])) == [0, 2]


def test_pool_and_in_process_runs_give_the_same_table_and_failures_become_rows(tmp_path):
    path = write_sweep(tmp_path, {"traffic[0].arrival.rate_per_s": [1.0, -1.0, 3.0], "policies[1].stagger": [0.0, 0.5]})
    pool = sweep(path, tmp_path / "pool", workers=2)
    serial = sweep(path, tmp_path / "serial", workers=1)
    assert pool.equals(serial)
    failed = pool[pool["error"] != ""]
    assert set(failed["traffic[0].arrival.rate_per_s"]) == {-1.0} and len(failed) == 2
    assert "must be > 0" in failed["error"].iloc[0]
    ok = pool[pool["error"] == ""]
    assert len(ok) == 4 * 2 and set(ok["policy"]) == {"fcfs", "pods"}  # 4 good runs x 2 policies
    assert list(pool["run_id"]) == sorted(pool["run_id"])


def test_ray_gives_the_same_table_as_the_pool(tmp_path, ray_session):
    path = write_sweep(tmp_path, {"traffic[0].arrival.rate_per_s": [1.0, 3.0]}, seeds=[1, 2])
    pool = sweep(path, tmp_path / "pool", workers=2)
    on_ray = sweep(path, tmp_path / "ray", ray="auto")
    assert on_ray.equals(pool)


def test_an_interrupted_sweep_resumes_without_redoing_finished_runs(tmp_path):
    path = write_sweep(tmp_path, {"traffic[0].arrival.rate_per_s": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]},
                       seeds=[1, 2])
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "emulator", "sweep", str(path), "--out", str(out), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = out / "results.csv"
    deadline = time.time() + 120
    while time.time() < deadline and (not results.is_file() or results.read_text().count("\n") < 5):
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    before = results.read_text().splitlines()[1:]
    finished = {line.split(",")[0] for line in before}
    assert 0 < len(finished) < 12, "the sweep should have been stopped midway"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    after = results.read_text().splitlines()[1:]
    assert sorted({line.split(",")[0] for line in after}, key=int) == [str(i) for i in range(12)]
    assert len(after) == 12 * 2  # each run once, two policies each
    assert all(line in after for line in before)  # finished rows kept as they were


def test_simulate_returns_tables():
    result = simulate({**BASE, "horizon_s": 2.0})
    assert list(result.summary["policy"]) == ["fcfs", "pods"]
    assert set(result.requests["policy"]) == {"fcfs", "pods"}
    assert {"time_s", "memory_GB", "policy"} <= set(result.timeseries.columns)


def test_sweep_tables_carry_cost_columns_that_scale_with_the_price(tmp_path):
    from emulator.engine.columns import COST_COLUMNS

    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**BASE, "cluster": {"devices": 2}}))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "base": "base.yaml", "policies": ["fcfs"],
                                    "axes": {"cluster.price_per_hour_usd": [1.0, 3.0]}}))
    table = sweep(path, tmp_path / "out", workers=1)
    assert set(COST_COLUMNS) <= set(table.columns)
    cheap, dear = table.iloc[0], table.iloc[1]
    assert dear.cost_usd == pytest.approx(3 * cheap.cost_usd)  # same traffic, three times the price
    # by hand: 2 devices x $1/h x simulated seconds / 3600
    assert cheap.cost_usd == pytest.approx(2 * cheap.simulated_s / 3600)
    assert cheap.usd_per_request == pytest.approx(cheap.cost_usd / cheap.completed)
