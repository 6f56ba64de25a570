"""cost-slo: its CSV columns, and invariants that hold by construction (cost = device-hours x price; a looser p99
target never makes the cheapest video dearer; a video's seconds are its frames over Wan 2.1's 16 fps)."""

import csv

import pytest

from emulator.devices import catalog
from experiments import EXPERIMENTS, cost_slo


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def out(experiment_results):
    d, results = experiment_results
    return d, results[cost_slo.NAME]


def test_registered_with_its_columns(out):
    d, result = out
    assert EXPERIMENTS["cost-slo"] is cost_slo
    for name, columns in (("cost-slo", cost_slo.COLUMNS), ("cost-slo-cheapest", cost_slo.BEST_COLUMNS)):
        with open(d / f"{name}.csv") as f:
            assert tuple(next(csv.reader(f))) == columns
    assert (d / "cost-slo.png").is_file() and result.finding


def test_cost_is_device_hours_times_the_catalog_price_and_a_video_is_frames_over_fps(out):
    d, _ = out
    for r in rows(d / "cost-slo.csv"):
        price = catalog()[r["device"]].price_per_hour_usd
        hours = int(r["devices"]) * float(r["simulated_s"]) / 3600
        assert float(r["device_hours"]) == pytest.approx(hours, rel=1e-9)
        assert float(r["cost_usd"]) == pytest.approx(hours * price, rel=1e-9)
        assert float(r["usd_per_video"]) == pytest.approx(float(r["cost_usd"]) / int(r["completed"]), rel=1e-9)
        assert float(r["usd_per_video_s"]) == pytest.approx(float(r["usd_per_video"]) / (33 / 16), rel=1e-9)


def test_a_looser_target_never_costs_more_per_video(out):
    d, _ = out
    best = rows(d / "cost-slo-cheapest.csv")
    assert best
    costs = [float(r["usd_per_video"]) for r in best]
    assert costs == sorted(costs, reverse=True)
    assert all(float(r["latency_p99_s"]) <= float(r["slo_p99_s"]) for r in best)
