"""The DiT experiments (dit-breakdown, dit-attention-share, dit-memory): CSV columns, and checks of their numbers
against quantities computed another way (the pipeline's own sums, by-hand token and byte counts)."""

import csv

import pytest

from emulator.cost import stage_time
from emulator.devices import DEFAULT_DEVICE
from experiments import EXPERIMENTS, dit_attention_share, dit_breakdown, dit_memory
from experiments.common import model, request_time
from workloads import STUDY_SUITE, WORKLOADS, build

NEW = (dit_breakdown, dit_attention_share, dit_memory)


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def results(experiment_results):
    return {m.NAME: experiment_results[1][m.NAME] for m in NEW}


def test_registered_after_the_study_in_order():
    names = list(EXPERIMENTS)
    assert names[-3:] == [m.NAME for m in NEW]
    assert all(EXPERIMENTS[m.NAME] is m and m.TITLE for m in NEW)


def test_the_dits_are_the_registry_minus_the_study_suite():
    from workloads import llama3

    llms = {w.name for w in llama3.WORKLOADS}
    assert set(dit_breakdown.DITS) == set(WORKLOADS) - set(STUDY_SUITE) - llms and len(dit_breakdown.DITS) == 10


@pytest.mark.parametrize("name,csv_name,columns", [
    ("dit-breakdown", "dit-breakdown", dit_breakdown.COLUMNS),
    ("dit-breakdown", "dit-breakdown-stages", dit_breakdown.STAGE_COLUMNS),
    ("dit-attention-share", "dit-attention-share", dit_attention_share.COLUMNS),
    ("dit-memory", "dit-memory", dit_memory.COLUMNS),
    ("dit-memory", "dit-memory-fit", dit_memory.FIT_COLUMNS)])
def test_csvs_have_their_documented_columns_and_pngs_exist(results, name, csv_name, columns):
    result = results[name]
    path = next(p for p in result.csvs if p.stem == csv_name)
    with open(path) as f:
        assert tuple(next(csv.reader(f))) == columns
    assert rows(path) and all(p.is_file() for p in result.pngs) and result.finding and result.table


def test_breakdown_shares_sum_to_one_per_request(results):
    totals = {}
    for r in rows(results["dit-breakdown"].csvs[0]):
        key = (r["workload"], r["attention"])
        totals[key] = totals.get(key, 0.0) + float(r["share_of_request"])
    assert len(totals) == 20 and all(t == pytest.approx(1.0, abs=1e-9) for t in totals.values())
    for r in rows(results["dit-breakdown"].csvs[1]):
        stages = sum(float(r[c]) for c in ("text_encoder_share", "transformer_share", "vae_decoder_share"))
        assert stages == pytest.approx(1.0, abs=1e-9)


def test_breakdown_request_time_and_vae_share_match_a_direct_costing(results):
    table = {r["workload"]: r for r in rows(results["dit-breakdown"].csvs[1])}
    cost = model(DEFAULT_DEVICE, "flash")
    for name in ("wan2.1-t2v-14b", "flux1-schnell"):
        p = build(name)
        request = request_time(p, cost).seconds
        first, _ = stage_time(p.stage("vae_decoder"), cost)
        assert float(table[name]["request_s"]) == pytest.approx(request, rel=1e-9)
        assert float(table[name]["vae_decoder_share"]) == pytest.approx(first.seconds / request, rel=1e-9)


def test_flash_is_faster_than_baseline_for_every_dit(results):
    assert all(float(r["flash_speedup"]) > 1 for r in rows(results["dit-breakdown"].csvs[1]))


def test_attention_share_grows_with_tokens_and_spans_1k_to_120k(results):
    data = rows(results["dit-attention-share"].csvs[0])
    for w in (*dit_attention_share.VIDEO_MODELS, dit_attention_share.IMAGE_MODEL):
        pts = sorted((int(r["tokens"]), float(r["attention_share"])) for r in data if r["workload"] == w)
        shares = [s for _, s in pts]
        assert all(0 < s < 1 for s in shares) and shares == sorted(shares), w
        if w in dit_attention_share.VIDEO_MODELS:
            assert pts[0][0] <= 1024 and pts[-1][0] >= 120_000, w


def test_attention_share_tokens_by_hand(results):
    # Wan 2.1: VAE 4x in time, 8x in space, patches 1x2x2; no text in the self-attention sequence.
    data = rows(results["dit-attention-share"].csvs[0])
    wan = next(r for r in data if r["workload"] == "wan2.1-t2v-14b" and r["frames"] == "81"
               and r["height_px"] == "480")
    assert int(wan["tokens"]) == (1 + 80 // 4) * (480 // 16) * (832 // 16) == 32760
    assert float(wan["attention_s"]) / float(wan["transformer_call_s"]) == pytest.approx(float(wan["attention_share"]))


def test_share_at_interpolates_only_within_the_sweep():
    data = [{"workload": "m", "tokens": 1000, "attention_share": 0.1},
            {"workload": "m", "tokens": 100_000, "attention_share": 0.9}]
    assert dit_attention_share.share_at(data, "m", 10_000) == pytest.approx(0.5)
    assert dit_attention_share.share_at(data, "m", 200_000) is None
    assert dit_attention_share.crossing(data, "m", 0.5) == pytest.approx(10_000)


def test_memory_weights_are_params_times_dtype_bytes_by_hand(results):
    stages = {r["stage"]: r for r in rows(results["dit-memory"].csvs[0]) if r["workload"] == "flux1-dev"}
    p = build("flux1-dev")
    transformer = p.stage("transformer").graph().totals.params
    assert 11.8e9 < transformer < 12.0e9  # FLUX.1's published 12B transformer
    assert stages["transformer"]["dtype"] == "bf16" and stages["transformer"]["dtype_bytes"] == "2"
    assert float(stages["transformer"]["weights_GB"]) == pytest.approx(transformer * 2 / 1e9, rel=1e-12)
    total = sum(float(r["weights_GB"]) for r in stages.values())
    assert total == pytest.approx(p.params_total * 2 / 1e9, rel=1e-12)


def test_memory_needs_and_fits_are_consistent(results):
    fits = rows(results["dit-memory"].csvs[1])
    assert len(fits) == 10 * len(dit_memory.GPUS_GB)
    for r in fits:
        weights, peak = float(r["weights_GB"]), float(r["peak_activation_GB"])
        resident, offloaded = float(r["resident_need_GB"]), float(r["offloaded_need_GB"])
        assert resident == pytest.approx(weights + peak) and offloaded <= resident
        assert (r["fits_resident"] == "True") == (resident <= int(r["gpu_GB"]))
        assert r["fits_resident"] == "False" or r["fits_offloaded"] == "True"
    for w in dit_breakdown.DITS:
        verdicts = [r["fits_resident"] == "True" for r in fits if r["workload"] == w]
        assert verdicts == sorted(verdicts), w  # a larger GPU fits whatever a smaller one does


def test_memory_peak_activation_matches_the_pipeline(results):
    stages = rows(results["dit-memory"].csvs[0])
    for name in ("wan2.1-t2v-14b", "pixart-sigma"):
        peak = max(float(r["peak_activation_GB"]) for r in stages if r["workload"] == name)
        assert peak == pytest.approx(build(name).peak_activation_bytes("flash") / 1e9, rel=1e-12)
        base = max(float(r["peak_activation_baseline_GB"]) for r in stages if r["workload"] == name)
        assert base >= peak
