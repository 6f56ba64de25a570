"""The step-caching experiment: its CSV columns, and invariants that hold by construction."""

import csv

import pytest

from experiments import EXPERIMENTS, step_caching


@pytest.fixture(scope="module")
def rows(experiment_results):
    result = experiment_results[1][step_caching.NAME]  # on the default device, the A100
    assert result.pngs[0].exists() and "sequence parallelism" in result.finding
    with open(result.csvs[0]) as f:
        assert tuple(csv.DictReader(f).fieldnames) == step_caching.COLUMNS
    with open(result.csvs[0]) as f:
        return list(csv.DictReader(f))


def test_it_is_registered():
    assert EXPERIMENTS["step-caching"] is step_caching


def test_speedups_are_one_without_caching_and_never_past_one_over_the_computed_share(rows):
    # A reused call costs more than nothing, so n calls of which a share s compute in full take at least s of the
    # uncached time: the speed-up is at most 1 / s, and exactly 1 when every call computes.
    for r in rows:
        share, speedup = float(r["computed_share"]), float(r["transformer_speedup"])
        assert speedup <= 1 / share * (1 + 1e-12), r
        if share == 1:
            assert speedup == 1.0 and float(r["cache_MB"]) == 0
    assert {r["gpus"] for r in rows} == {"1", "4"}
