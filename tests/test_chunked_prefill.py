"""chunked-prefill: a mixed step's cost from its parts, the step sequence of a hand-worked example, one-line errors.

Expected step times are assembled here by hand from the cost model, independently of
`emulator.engine.mixedstep`: the token-wise ops are those of a LLaMA-3.1-8B prefill of T tokens (the
prefill graph built by `workloads.build` with prompt_tokens=T: every op but attention and the head), the head
(final norm, LM head, sampling) that of a prefill graph at batch S, and one attention op per request and
layer written out from the published configuration (32 query heads, 8 K/V heads, head_dim 128, 32
layers). Under CUDA graphs a step is one launch (`host_s_per_kernel`) plus its kernels back to back. The
policy's default `decode_attention: batched` costs a step's decodes as one attention op per layer at batch n
and their mean KV length rounded up; `per-request` as one op per request.
"""

import json
import math
from pathlib import Path

import pytest

from emulator.cost import cost_model, runtime
from emulator.engine.mixedstep import mixed_step
from emulator.engine.scenario import scenario_from_data
from emulator.engine.simulate import run_scenario
from emulator.engine.stepcost import StepCosts
from emulator.errors import UserError
from emulator.ops import Op
from emulator.shapes import Attention
from workloads import build

A100 = "a100-sxm4-80gb"
LAYERS, HEADS, KV_HEADS, HEAD_DIM = 32, 32, 8, 128  # LLaMA-3.1-8B's config.json
HEAD_OPS = 3  # final norm, lm_head, sample: the last ops of the graph


def model():
    return cost_model(A100, "flash")


def hand_step(m, tokens: int, logits: int, pairs, decodes=()) -> float:
    """One launch, the token-wise ops of a T-token prefill, the head at S rows, attention per request (q, kv)
    of `pairs`, and one batched decode attention over the KV lengths `decodes`."""
    prefill = build("llama3.1-8b", prompt_tokens=tokens, output_tokens=2).stage("prefill").graph(1)
    body = [op for op in prefill.ops[:-HEAD_OPS] if not isinstance(op.shape, Attention)]
    seconds = m.host_s_per_kernel + sum(m.op_time(op) for op in body)
    if logits:
        head = build("llama3.1-8b", prompt_tokens=16, output_tokens=2).stage("prefill").graph(logits).ops[-HEAD_OPS:]
        seconds += sum(m.op_time(op) for op in head)
    ops = [(1, q, kv) for q, kv in pairs]
    if decodes:
        ops.append((len(decodes), 1, math.ceil(sum(decodes) / len(decodes))))
    for batch, q, kv in ops:
        a = Attention(batch, HEADS, q, kv, HEAD_DIM, "causal", causal=True, kv_cache=True, kv_heads=KV_HEADS)
        seconds += LAYERS * m.op_time(Op("attention", a, "bf16"))
    return seconds


def stepper():
    m = model()
    p = build("llama3.1-8b", prompt_tokens=300, output_tokens=3)
    return m, mixed_step(StepCosts(m, runtime("cuda-graphs")), p.stage("prefill"), p.stage("decode"))


@pytest.mark.parametrize("tokens,logits,pairs", [
    (244, 2, [(44, 300), (200, 200)]),  # a prefill's last chunk beside another's whole prompt
    (70, 3, [(1, 301), (1, 201), (68, 68)]),  # two decodes and a new prompt
    (128, 0, [(128, 384)]),  # a middle chunk: no logits
])
def test_a_mixed_step_costs_its_token_wise_ops_at_the_total_plus_attention_per_request(tokens, logits, pairs):
    m, step = stepper()
    assert step.cost(tokens, logits, pairs).seconds == pytest.approx(hand_step(m, tokens, logits, pairs), rel=1e-12)
    chunks = [(q, kv) for q, kv in pairs if q > 1]
    decodes = [kv for q, kv in pairs if q == 1]
    batched = step.cost(tokens, logits, pairs, batched_decode=True).seconds
    assert batched == pytest.approx(hand_step(m, tokens, logits, chunks, decodes), rel=1e-12)


@pytest.mark.parametrize("run_as", ["eager", "cuda-graphs"])
def test_a_whole_prompt_chunk_is_the_prefill_call_and_a_lone_decode_the_decode_call(run_as):
    from emulator.cost.costing import stage_time

    m = model()
    p = build("llama3.1-8b", prompt_tokens=300, output_tokens=3)
    prefill, decode = p.stage("prefill"), p.stage("decode")
    step = mixed_step(StepCosts(m, runtime(run_as)), prefill, decode)
    assert step.cost(300, 1, [(300, 300)]).seconds == pytest.approx(
        stage_time(prefill, m, 1, runtime(run_as))[0].seconds, rel=1e-12)
    decodes = step.cost(1, 1, [(1, 301)]).seconds + step.cost(1, 1, [(1, 302)]).seconds  # KV 301, then 302
    assert decodes == pytest.approx(stage_time(decode, m, 1, runtime(run_as))[1].seconds, rel=1e-12)


def test_gqa_is_kept_in_the_kv_per_token():
    _, step = stepper()
    assert step.kv_bytes_per_token == 2 * LAYERS * KV_HEADS * HEAD_DIM * 2  # K and V, bf16, 8 of 32 heads


def scenario(tmp_path, budget, trace_rows, **extra):
    (tmp_path / "trace.csv").write_text("time_s,prompt_tokens,output_tokens\n" + trace_rows)
    c = {"name": "chat", "workload": "llama3.1-8b", "lengths": {"prompt_round_to": 1},
         "arrival": {"process": "trace", "path": "trace.csv"}}
    return scenario_from_data({"name": "t", "device": A100, "attention": "flash", "traffic": [c],
                               "policies": [{"name": "cp", "policy": "chunked-prefill", "token_budget": budget}],
                               **extra}, str(tmp_path))


def test_two_prompts_under_a_budget_take_the_chunks_worked_out_by_hand(tmp_path):
    # Budget 256. A (300 tokens, 3 out) arrives at 0, B (200 tokens, 3 out) at 1 ms, during A's first step.
    #   step 1: A prefills 256 of 300                                   T=256, no logits
    #   step 2: A prefills its last 44 (kv 300), emits token 1; B joins
    #           with its whole 200 (kv 200), emits token 1              T=244, 2 logits
    #   step 3: A decodes (kv 301), B decodes (kv 201): token 2 each    T=2, one decode attention at kv 251
    #   step 4: A decodes (kv 302), B decodes (kv 202): token 3, done   T=2, one decode attention at kv 252
    s = scenario(tmp_path, 256, "0.0,300,3\n0.001,200,3\n")
    run_scenario(s, tmp_path / "out", trace=True)
    m = model()
    t = [hand_step(m, 256, 0, [(256, 256)]), hand_step(m, 244, 2, [(44, 300), (200, 200)]),
         hand_step(m, 2, 2, [], [301, 201]), hand_step(m, 2, 2, [], [302, 202])]
    import csv
    with open(tmp_path / "out" / "cp" / "requests.csv") as f:
        a, b = sorted(csv.DictReader(f), key=lambda r: int(r["id"]))
    assert float(a["ttft_s"]) == pytest.approx(t[0] + t[1], rel=1e-9)
    assert float(b["ttft_s"]) == pytest.approx(t[0] + t[1] - 0.001, rel=1e-9)
    assert float(a["done_s"]) == pytest.approx(sum(t), rel=1e-9) and a["done_s"] == b["done_s"]
    assert float(a["tpot_s"]) == pytest.approx((t[2] + t[3]) / 2, rel=1e-9)
    events = json.loads((tmp_path / "out" / "cp" / "trace.json").read_text())["traceEvents"]
    steps = [e["args"]["requests"] for e in events if e.get("name") == "step"]
    assert steps == [[0], [0, 1], [0, 1], [0, 1]]


def test_a_prompt_longer_than_the_budget_emits_its_first_token_after_its_last_chunk(tmp_path):
    # 1000 tokens under a budget of 300: chunks 300, 300, 300, 100 (kv 300, 600, 900, 1000).
    s = scenario(tmp_path, 300, "0.0,1000,2\n")
    run_scenario(s, tmp_path / "out")
    m = model()
    chunks = [hand_step(m, 300, 0, [(300, 300)]), hand_step(m, 300, 0, [(300, 600)]),
              hand_step(m, 300, 0, [(300, 900)]), hand_step(m, 100, 1, [(100, 1000)])]
    (summary,) = [json.loads((tmp_path / "out" / "cp" / "summary.json").read_text())]
    assert summary["ttft_s"]["p50"] == pytest.approx(sum(chunks), rel=1e-9)


@pytest.mark.parametrize("params,message", [
    ({"token_budget": 0}, r"policies\[0\]\.token_budget: must be >= 1"),
    ({"block_tokens": 0}, r"policies\[0\]\.block_tokens: must be >= 1"),
    ({"max_running": -1}, r"policies\[0\]\.max_running: must be >= 1"),
    ({"preemption": "evict"}, r"policies\[0\]\.preemption: must be one of 'recompute', 'swap', got 'evict'"),
    ({"decode_attention": "padded"}, r"policies\[0\]\.decode_attention: must be one of 'batched', 'per-request'"),
    ({"budget": 5}, r"policies\[0\]\.budget"),
])
def test_bad_params_are_one_line_errors(params, message):
    c = {"name": "chat", "workload": "llama3.1-8b", "max_requests": 1, "arrival": {"process": "fixed", "rate_per_s": 1}}
    with pytest.raises(UserError, match=message) as e:
        scenario_from_data({"name": "t", "traffic": [c], "policies": [{"policy": "chunked-prefill", **params}]})
    assert "\n" not in str(e.value)


def test_baseline_attention_and_non_llm_stages_are_refused_in_one_line(tmp_path):
    chat = {"name": "chat", "workload": "llama3.1-8b", "knobs": {"prompt_tokens": 64, "output_tokens": 4},
            "max_requests": 1, "arrival": {"process": "fixed", "rate_per_s": 1}}
    parti = {"name": "parti", "workload": "parti", "max_requests": 1, "arrival": {"process": "fixed", "rate_per_s": 1}}
    policies = [{"policy": "chunked-prefill"}]
    cases = [({"traffic": [chat], "attention": "baseline"}, "needs a fused attention"),
             ({"traffic": [chat, parti]}, "traffic class 'parti' runs")]
    for extra, message in cases:
        s = scenario_from_data({"name": "t", "device": A100, "policies": policies, **extra})
        with pytest.raises(UserError, match=message) as e:
            run_scenario(s, None)
        assert "\n" not in str(e.value)


def test_the_shipped_comparison_loads_and_runs_shortened():
    import yaml

    from emulator.engine.sweep import load_sweep

    root = Path(__file__).resolve().parents[1] / "configs"
    data = yaml.safe_load((root / "llm-chunked.yaml").read_text())
    s = scenario_from_data({**data, "horizon_s": 5}, str(root))
    assert s.runtime == "cuda-graphs" and [p.policy for p in s.policies] == ["step-batch", "chunked-prefill"]
    for summary in run_scenario(s, None):
        n = summary["requests"]
        assert n["arrived"] == n["completed"] > 0 and summary["ttft_s"]["p50"] > 0
    spec, _, _ = load_sweep(root / "sweep-llm-chunked.yaml")
    assert spec is not None
