"""Token metrics (TTFT, TPOT, time between tokens) and per-request lengths from distributions and traces.

Expectations are computed independently of the engine: `emulator.cost.stage_time` costs the prefill and
decode stages of a pipeline built by `workloads.build` under the scenario's cost model and runtime, the same
timeline `describe` uses (the engine charges a call its timeline seconds, host dispatch included).
"""

import csv
import math

import numpy as np
import pytest

from emulator.cost import cost_model, runtime
from emulator.cost.costing import stage_time
from emulator.engine.lengths import LengthDist, LengthSampler, Lengths
from emulator.engine.scenario import scenario_from_data
from emulator.engine.simulate import run_scenario
from emulator.errors import UserError
from workloads import build

A100 = "a100-sxm4-80gb"
CHAT = {"prompt_tokens": 64, "output_tokens": 16}


def scenario(traffic, policies, base_dir=".", **extra):
    return scenario_from_data({"name": "t", "device": A100, "runtime": "cuda-graphs", "traffic": traffic,
                               "policies": policies, **extra}, base_dir)


def rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def lone(knobs=None, lengths=None, **extra):
    c = {"name": "chat", "workload": "llama2-7b", "max_requests": 1, "arrival": {"process": "fixed", "rate_per_s": 1.0},
         **extra}
    if knobs:
        c["knobs"] = knobs
    if lengths:
        c["lengths"] = lengths
    return c


def expected(prompt: int, output: int) -> tuple[float, float]:
    """(TTFT, TPOT) of a lone LLaMA request: its prefill's call, and its decode calls' mean."""
    model = cost_model(A100, "default")
    p = build("llama2-7b", prompt_tokens=prompt, output_tokens=output)
    prefill, decode = p.stage("prefill"), p.stage("decode")
    ttft = stage_time(prefill, model, 1, runtime("cuda-graphs"))[0].seconds
    tpot = stage_time(decode, model, 1, runtime("cuda-graphs"))[1].seconds / (output - 1)
    return ttft, tpot


POLICIES = [{"policy": "fcfs"}, {"policy": "static-batch"}, {"policy": "step-batch"}, {"policy": "pods"},
            {"policy": "chunked-prefill"}]  # a lone prompt is one chunk (64 tokens, under the 512 budget)


@pytest.mark.parametrize("how", ["knobs", "lengths"])
def test_a_lone_request_has_its_prefill_as_ttft_and_its_decode_step_as_tpot(tmp_path, how):
    c = lone(knobs=CHAT) if how == "knobs" else lone(lengths={
        "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "uniform", "min": 16, "max": 16}})
    summaries = run_scenario(scenario([c], POLICIES), tmp_path)
    ttft, tpot = expected(64, 16)
    for s in summaries:
        (row,) = rows(tmp_path / s["policy"] / "requests.csv")
        assert float(row["ttft_s"]) == pytest.approx(ttft, rel=1e-9), s["policy"]
        assert float(row["tpot_s"]) == pytest.approx(tpot, rel=1e-9), s["policy"]
        assert (row["prompt_tokens"], row["output_tokens"]) == ("64", "16")
        assert s["ttft_s"]["p50"] == pytest.approx(ttft, rel=1e-9)
        assert s["tbt_s"]["mean"] == pytest.approx(tpot, rel=1e-9)  # 15 gaps, one per decode call


def test_a_shifted_decode_costs_the_same_as_its_own(tmp_path):
    # Two lengths in one class: the longer prompt's decode is costed as the shorter's, 448 positions ahead.
    c = lone(lengths={"prompt_tokens": {"dist": "empirical", "path": "p.csv"}, "prompt_round_to": 1,
                      "output_tokens": {"dist": "fixed", "value": 8}})
    c["max_requests"] = 6
    c["arrival"]["rate_per_s"] = 0.5  # one at a time
    (tmp_path / "p.csv").write_text("prompt_tokens\n64\n512\n")
    run_scenario(scenario([c], [{"policy": "fcfs"}], base_dir=str(tmp_path)), tmp_path / "out")
    got = rows(tmp_path / "out" / "fcfs" / "requests.csv")
    assert {r["prompt_tokens"] for r in got} == {"64", "512"}
    for r in got:
        ttft, tpot = expected(int(r["prompt_tokens"]), 8)
        assert float(r["ttft_s"]) == pytest.approx(ttft, rel=1e-9)
        assert float(r["tpot_s"]) == pytest.approx(tpot, rel=1e-9)


def test_non_autoregressive_requests_leave_token_metrics_blank(tmp_path):
    c = {"name": "img", "workload": "stable-diffusion", "knobs": {"image_size": 256, "steps": 4},
         "max_requests": 2, "arrival": {"process": "fixed", "rate_per_s": 1.0}}
    (s,) = run_scenario(scenario([c], [{"policy": "fcfs"}]), tmp_path)
    for r in rows(tmp_path / "fcfs" / "requests.csv"):
        assert r["ttft_s"] == r["tpot_s"] == r["output_tokens"] == ""
    assert s["ttft_s"]["p50"] is None and s["tpot_s"]["p99"] is None and s["tbt_s"]["p50"] is None


def test_parti_emits_its_first_image_token_at_its_first_decoder_call(tmp_path):
    c = {"name": "parti", "workload": "parti", "max_requests": 1, "arrival": {"process": "fixed", "rate_per_s": 1.0}}
    run_scenario(scenario([c], [{"policy": "step-batch"}]), tmp_path)
    (r,) = rows(tmp_path / "step-batch" / "requests.csv")
    model = cost_model(A100, "default")
    p = build("parti")
    encoder, decoder = p.stage("encoder"), p.stage("decoder")
    first, whole = stage_time(decoder, model, decoder.batch, runtime("cuda-graphs"))
    ttft = stage_time(encoder, model, encoder.batch, runtime("cuda-graphs"))[0].seconds + first.seconds
    assert float(r["ttft_s"]) == pytest.approx(ttft, rel=1e-9)
    assert float(r["tpot_s"]) == pytest.approx((whole.seconds - first.seconds) / 1023, rel=1e-9)


def test_token_slos_count_in_the_attainment(tmp_path):
    ttft, tpot = expected(64, 16)
    classes = [lone(knobs=CHAT, ttft_slo_s=ttft * 1.01, tpot_slo_s=tpot * 1.01),
               {**lone(knobs=CHAT, tpot_slo_s=tpot * 0.99), "name": "strict"}]
    (s,) = run_scenario(scenario(classes, [{"policy": "fcfs"}]), tmp_path)
    assert s["slo_attainment"] == 0.5
    met = {r["class"]: r["slo_met"] for r in rows(tmp_path / "fcfs" / "requests.csv")}
    assert met == {"chat": "True", "strict": "False"}


def test_a_trace_with_per_request_lengths_yields_those_lengths(tmp_path):
    (tmp_path / "trace.csv").write_text("time_s,prompt_tokens,output_tokens\n0.0,100,20\n0.5,37,5\n1.0,,9\n")
    c = {"name": "chat", "workload": "llama2-7b", "knobs": {"prompt_tokens": 200},
         "lengths": {"prompt_round_to": 1}, "arrival": {"process": "trace", "path": "trace.csv"}}
    run_scenario(scenario([c], [{"policy": "step-batch"}], base_dir=str(tmp_path)), tmp_path / "out")
    got = sorted((int(r["id"]), r["prompt_tokens"], r["output_tokens"])
                 for r in rows(tmp_path / "out" / "step-batch" / "requests.csv"))
    assert got == [(0, "100", "20"), (1, "37", "5"), (2, "200", "9")]  # a blank cell takes the knob


def draws(d: LengthDist, key="output_tokens", n=10_000, base_dir=".", **lengths) -> np.ndarray:
    sampler = LengthSampler(Lengths(**{key: d}, **lengths), np.random.default_rng([7, 0, 1]), base_dir)
    return np.array([sampler.draw()[key] for _ in range(n)])


def test_lognormal_draws_match_their_median_and_sigma_and_respect_the_clip():
    x = draws(LengthDist("lognormal", median=512, sigma=0.6, min=16, max=100_000))
    assert np.median(x) == pytest.approx(512, rel=0.05)
    assert np.std(np.log(x)) == pytest.approx(0.6, rel=0.05)
    clipped = draws(LengthDist("lognormal", median=512, sigma=1.5, min=100, max=1000))
    assert clipped.min() == 100 and clipped.max() == 1000  # both bounds bind, none is passed


def test_uniform_and_fixed_draws_and_prompt_rounding():
    u = draws(LengthDist("uniform", min=10, max=20))
    assert set(u) == set(range(10, 21)) and np.mean(u) == pytest.approx(15, rel=0.02)
    assert set(draws(LengthDist("fixed", value=7), n=10)) == {7}
    p = draws(LengthDist("uniform", min=20, max=100), key="prompt_tokens", prompt_round_to=16)
    assert set(p) == {32, 48, 64, 80, 96, 100}  # up to a multiple of 16, clipped to max


def test_empirical_draws_only_values_of_the_file(tmp_path):
    (tmp_path / "lengths.csv").write_text("n\n3\n50\n50\n700\n")
    x = draws(LengthDist("empirical", path="lengths.csv", column="n"), base_dir=str(tmp_path))
    assert set(x) == {3, 50, 700}
    assert np.mean(x == 50) == pytest.approx(0.5, abs=0.03)


@pytest.mark.parametrize("lengths,message", [
    ({"prompt_tokens": {"dist": "lognormal", "median": 100, "sigma": 0.5}}, "lengths.prompt_tokens.max: missing"),
    ({"prompt_tokens": {"dist": "uniform", "min": 9, "max": 3}}, "lengths.prompt_tokens.max: must be >= min"),
    ({"output_tokens": {"dist": "fixed", "value": 9, "sigma": 1.0}}, "sigma: not used by dist fixed"),
    ({"output_tokens": {"dist": "gamma"}}, "lengths.output_tokens.dist: must be one of"),
    ({"output_tokens": {"dist": "empirical", "path": "none.csv"}}, "lengths.output_tokens.path:"),
    ({"prompt_tokens": {"dist": "fixed", "value": 4000}, "output_tokens": {"dist": "fixed", "value": 200}},
     "lengths: the longest lengths: prompt_tokens 4000 + output_tokens 200 = 4200 exceeds"),
    ({"output_tokens": {"dist": "uniform", "min": 1, "max": 9}}, "lengths.output_tokens: must be >= 2"),
])
def test_bad_lengths_are_one_line_errors(lengths, message):
    with pytest.raises(UserError) as e:
        scenario([lone(lengths=lengths)], [{"policy": "fcfs"}])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_token_slos_need_an_autoregressive_workload():
    c = {"name": "img", "workload": "stable-diffusion", "ttft_slo_s": 1.0,
         "arrival": {"process": "fixed", "rate_per_s": 1.0}}
    with pytest.raises(UserError, match=r"traffic\[0\]\.ttft_slo_s: 'stable-diffusion' has no autoregressive"):
        scenario([c], [{"policy": "fcfs"}])
    with pytest.raises(UserError, match=r"lengths.prompt_tokens: also set in knobs"):
        scenario([lone(knobs=CHAT, lengths={"prompt_tokens": {"dist": "fixed", "value": 9}})], [{"policy": "fcfs"}])


def test_lengths_are_drawn_from_their_own_stream_and_seeded(tmp_path):
    c = lone(lengths={"prompt_tokens": {"dist": "uniform", "min": 16, "max": 512},
                      "output_tokens": {"dist": "uniform", "min": 2, "max": 30}})
    c["max_requests"] = 8
    c["arrival"] = {"process": "poisson", "rate_per_s": 2.0}
    fixed = lone(knobs=CHAT)
    fixed["max_requests"], fixed["arrival"] = 8, {"process": "poisson", "rate_per_s": 2.0}
    for d, cls in (("a", c), ("b", c), ("c", fixed)):
        run_scenario(scenario([cls], [{"policy": "step-batch"}]), tmp_path / d)
    a, b, f = (sorted(rows(tmp_path / d / "step-batch" / "requests.csv"), key=lambda r: int(r["id"])) for d in "abc")
    assert a == b
    assert [r["arrival_s"] for r in a] == [r["arrival_s"] for r in f]  # lengths do not move arrivals
    assert len({r["prompt_tokens"] for r in a}) > 1 and all(int(r["prompt_tokens"]) % 16 == 0 for r in a)
    assert all(math.isfinite(float(r["ttft_s"])) for r in a)
