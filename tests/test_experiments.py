"""Each experiment's CSV has its documented columns and obeys invariants that hold by construction."""

import csv
import math

import pytest

from experiments import (
    EXPERIMENTS,
    breakdown,
    fsdp_training,
    memory,
    prefill_decode,
    seqlen,
    temporal,
)
from experiments.__main__ import main
from workloads import build

ROOFLINE_DEVICE = "l4"  # costed by its datasheet roofline where a test hides its shipped profile


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def out(experiment_results):
    return experiment_results[0]


def test_all_writes_every_csv_png_and_a_report_that_links_them(out):
    report = (out / "report.md").read_text()
    for name in EXPERIMENTS:
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.png").is_file(), name
        assert f"`{name}`" in report and f"]({name}.png)" in report
        assert rows(out / f"{name}.csv"), name
    assert report.count("**Finding.**") == len(EXPERIMENTS)


@pytest.mark.parametrize("name,columns", [
    ("taxonomy", EXPERIMENTS["taxonomy"].COLUMNS), ("roofline", EXPERIMENTS["roofline"].COLUMNS),
    ("breakdown", breakdown.COLUMNS), ("breakdown-speedup", breakdown.SPEEDUP_COLUMNS),
    ("prefill-decode", prefill_decode.COLUMNS), ("prefill-decode-calls", prefill_decode.CALL_COLUMNS),
    ("seqlen", seqlen.COLUMNS), ("seqlen-sd-histogram", seqlen.HIST_COLUMNS), ("memory", memory.COLUMNS),
    ("image-size", EXPERIMENTS["image-size"].COLUMNS), ("temporal", temporal.COLUMNS),
    ("temporal-make-a-video", temporal.MAV_COLUMNS), ("temporal-crossover", temporal.CROSS_COLUMNS),
    ("fsdp-training", fsdp_training.COLUMNS)])
def test_csvs_have_their_documented_columns(out, name, columns):
    with open(out / f"{name}.csv") as f:
        assert tuple(next(csv.reader(f))) == columns


def test_breakdown_shares_sum_to_one(out):
    totals = {}
    for r in rows(out / "breakdown.csv"):
        key = (r["workload"], r["attention"])
        totals[key] = totals.get(key, 0.0) + float(r["share"])
    assert len(totals) == 16 and all(t == pytest.approx(1.0, abs=1e-9) for t in totals.values())


def test_flash_is_never_slower_than_baseline_under_the_roofline(tmp_path, monkeypatch):
    # The roofline costs flash as one kernel doing the same FLOPs over fewer bytes.
    monkeypatch.setattr("emulator.cost.costing.shipped_profile", lambda name: None)
    speedups = breakdown.run(ROOFLINE_DEVICE, tmp_path).csvs[1]
    assert all(float(r["end_to_end_speedup"]) >= 1 and float(r["attention_speedup"]) >= 1 for r in rows(speedups))
    grid = prefill_decode.run(ROOFLINE_DEVICE, tmp_path).csvs[0]
    assert all(float(r["speedup"]) >= 1 - 1e-12 for r in rows(grid))


def test_attention_implementation_leaves_convolution_time_alone(out):
    by_size = {}
    for r in rows(out / "image-size.csv"):
        by_size.setdefault(r["image_size"], set()).add(r["convolution_s"])
    assert all(len(v) == 1 for v in by_size.values())


def test_temporal_flops_are_quadratic_and_spatial_linear_in_frames(out):
    data = rows(out / "temporal.csv")
    for grid in {r["grid"] for r in data}:
        pts = {int(r["frames"]): r for r in data if r["grid"] == grid}
        for f in pts:
            if 2 * f in pts:
                assert int(pts[2 * f]["temporal_flops"]) == 4 * int(pts[f]["temporal_flops"])
                assert int(pts[2 * f]["spatial_flops"]) == 2 * int(pts[f]["spatial_flops"])
    # F frames of HW tokens: spatial ~ F (HW)^2, temporal ~ HW F^2, equal at F = HW (by hand)
    for r in rows(out / "temporal-crossover.csv"):
        assert int(r["crossover_frames"]) == int(r["tokens_per_frame"])


def test_similarity_memory_grows_as_the_fourth_power_of_the_latent_side(out):
    data = [{k: float(v) if v else None for k, v in r.items()} for r in rows(out / "memory.csv")]
    assert memory.fitted_exponent(data) == pytest.approx(4.0, abs=0.05)
    assert all(r["formula_bytes"] == r["graph_bytes"] for r in data)


def test_sd_histogram_counts_every_attention_call_of_a_pass(out):
    hist = rows(out / "seqlen-sd-histogram.csv")
    for size in seqlen.SD_SIZES:
        n = len(build("stable-diffusion", image_size=size).stage("unet").graph().attention_ops)
        assert sum(int(r["count"]) for r in hist if int(r["image_size"]) == size) == n
    # 512x512: a 64x64 latent, attention at 64x64, 32x32, 16x16 and the 8x8 bottleneck
    assert {int(r["q_len"]) for r in hist if r["image_size"] == "512"} == {4096, 1024, 256, 64}


def test_fsdp_communication_follows_the_ring_formula(out):
    r16 = next(r for r in rows(out / "fsdp-training.csv") if r["gpus"] == "16")
    params = build("stable-diffusion", guidance=False).stage("unet").graph(1).totals.weight_bytes
    # by hand: 3 rings (two all-gathers, one reduce-scatter) of 15 hops of 10 us and 15/16 of the bytes at 25 GB/s
    expected = 3 * (15 * 10e-6 + 15 / 16 * params / 25e9)
    assert float(r16["communication_s"]) == pytest.approx(expected, rel=1e-9)
    assert float(r16["compute_s"]) == pytest.approx(3 * float(r16["forward_s"]), rel=1e-9)
    assert not math.isnan(float(r16["step_overlap_on_s"]))


def test_the_cli_lists_and_refuses_unknown_names(capsys):
    assert main(["list"]) == 0
    assert "fsdp-training" in capsys.readouterr().out
    assert main(["nope"]) == 2
    assert main(["taxonomy", "--device", "tpu"]) == 2
