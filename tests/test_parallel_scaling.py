"""The parallel-scaling experiment: CSV columns and invariants, on two of its settings to stay quick.

Invariants: rows at one GPU are the single-GPU times; speedup is the one-GPU time over the rank's; CFG
parallel runs the same kernels on half the calls, so its speedup must stay at most 2 (other methods change
kernel shapes, and a profile's throughput differs by shape, so no bound is asserted there); a PipeFusion rank
holds less than the whole model and pays a pipeline bubble.
"""

import csv

import pytest

from experiments import EXPERIMENTS, parallel_scaling

SETTINGS = (("flux1-dev", "1024", {"height": 1024, "width": 1024}),
            ("wan2.1-t2v-14b", "480p", {"height": 480, "width": 832}))


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parallel_scaling, "SETTINGS", SETTINGS)
        return parallel_scaling.run("h100-sxm", tmp_path_factory.mktemp("parallel-scaling"))


@pytest.fixture(scope="module")
def rows(result):
    with open(result.csvs[0]) as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == parallel_scaling.COLUMNS
        return list(reader)


def test_registered_with_figures_and_a_finding(result):
    assert EXPERIMENTS[parallel_scaling.NAME] is parallel_scaling
    assert all(p.is_file() for p in result.pngs) and len(result.pngs) == 2
    assert "Best plan on 8 GPUs" in result.finding and "flux1-dev 1024" in result.finding


def test_one_gpu_rows_are_the_single_gpu_times(rows):
    ones = [r for r in rows if r["gpus"] == "1"]
    assert {r["method"] for r in ones} == set(parallel_scaling.METHODS)
    for r in ones:
        assert float(r["transformer_s"]) == float(r["transformer_one_gpu_s"])
        assert float(r["end_to_end_s"]) == float(r["end_to_end_one_gpu_s"]) and float(r["speedup"]) == 1.0


def test_speedup_and_cfg_bound(rows):
    for r in rows:
        assert float(r["speedup"]) == pytest.approx(float(r["transformer_one_gpu_s"]) / float(r["transformer_s"]))
        assert 0 <= float(r["communication_share"]) < 1
        assert float(r["efficiency"]) == pytest.approx(float(r["speedup"]) / int(r["gpus"]))
    cfg = [r for r in rows if r["method"] == "cfg" and r["gpus"] == "2"]
    assert [r["workload"] for r in cfg] == ["wan2.1-t2v-14b"]  # FLUX.1-dev is guidance-distilled: no CFG pair
    assert 1.5 < float(cfg[0]["speedup"]) <= 2 + 1e-9


def test_pipefusion_shards_weights_and_pays_a_bubble(rows):
    one = {r["workload"]: float(r["weights_per_rank_GiB"]) for r in rows if r["gpus"] == "1"}
    pf = [r for r in rows if r["method"] == "pipefusion" and r["gpus"] != "1"]
    assert pf
    for r in pf:
        assert float(r["weights_per_rank_GiB"]) < one[r["workload"]] and float(r["pipeline_bubble_s"]) > 0
        assert float(r["kv_per_rank_GiB"]) > 0
    uly = [r for r in rows if r["method"] == "ulysses" and r["gpus"] != "1"]
    assert all(float(r["weights_per_rank_GiB"]) == one[r["workload"]] for r in uly)  # replicated
