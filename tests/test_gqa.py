"""Grouped-query attention: Attention.kv_heads, its costing, and the LLaMA-3.1 workloads built on it."""

from collections import Counter
from dataclasses import asdict

import pytest

from emulator.cost.kernels import baseline_attention_kernels, work
from emulator.cost.predictor import FEATURE_SETS, log_features, work_items
from emulator.cost.profile import load_profile, predictor_of, shipped_profile, shape_from_json, shape_to_json
from emulator.ops import Op
from emulator.shapes import Attention
from workloads import build

GQA = Attention(2, 32, 512, 512, 128, "causal", causal=True, kv_heads=8)
MHA = Attention(2, 32, 512, 512, 128, "causal", causal=True)


def test_kv_heads_move_kv_bytes_not_flops():
    assert GQA.flops == MHA.flops and GQA.mac_flops == MHA.mac_flops
    assert GQA.input_elements == 2 * 128 * (32 * 512 + 2 * 8 * 512)  # q [2, 32, 512, 128], k/v [2, 8, 512, 128]
    assert GQA.similarity_elements == MHA.similarity_elements
    cached = Attention(1, 32, 1, 513, 128, "causal", causal=True, kv_cache=True, kv_heads=8)
    assert cached.kv_cache_elements == 2 * 8 * 513 * 128
    assert cached.advanced(10).kv_heads == 8 and cached.advanced(10).kv_cache_elements == 2 * 8 * 523 * 128


def test_kv_heads_equal_to_heads_is_multi_head_attention_and_old_points_load():
    assert Attention(2, 32, 512, 512, 128, "causal", causal=True, kv_heads=32) == MHA
    assert hash(Attention(2, 32, 512, 512, 128, "causal", causal=True, kv_heads=32)) == hash(MHA)
    old = {k: v for k, v in asdict(MHA).items() if k != "kv_heads"}  # a profile point written before the field
    assert shape_from_json("attention_flash", old) == MHA
    assert shape_from_json("attention_fa3", shape_to_json(GQA)) == GQA
    with pytest.raises(ValueError, match="groups"):
        Attention(1, 32, 16, 16, 64, kv_heads=5)
    with pytest.raises(ValueError, match="kv_heads"):
        Attention(1, 32, 16, 16, 64, kv_heads=0)


def test_eager_baseline_repeats_kv_over_the_groups():
    kernels = baseline_attention_kernels(Op("a", GQA, "bf16"))
    assert [k.name for k in kernels][:2] == ["a.repeat_k", "a.repeat_v"]
    assert kernels[0].shape.elements == 2 * 32 * 512 * 128  # [B, H, kv, d] materialized
    assert kernels[2:] == baseline_attention_kernels(Op("a", MHA, "bf16"))  # then multi-head attention's kernels
    assert work(Op("a", GQA, "bf16"), "flash")[1] < work(Op("a", MHA, "bf16"), "flash")[1]


def test_group_feature_is_zero_for_multi_head_attention_and_work_items_pack_the_group():
    assert list(log_features("attention-gqa", MHA)) == list(log_features("attention", MHA)) + [0.0]
    assert FEATURE_SETS["attention-gqa"](GQA)[-1] == 4
    assert work_items("attention_fa3", MHA) == 2 * 32 * 4
    decode = Attention(8, 32, 1, 600, 128, "causal", causal=True, kv_cache=True, kv_heads=8)
    assert work_items("attention_fa3", decode) == 8 * 8  # a KV head's 4 query heads are one tile's rows
    assert work_items("attention_fa3", GQA) == 2 * 8 * 16


# A kind fitted in the grouped-query feature set over multi-head points only must predict exactly as in the
# multi-head set (the group column is 0 everywhere): checked on the shipped measured profiles' attention.
MULTI_HEAD_KINDS = [("h100-sxm", "attention_flash"), ("h100-sxm", "attention_baseline"),
                    ("cpu-fp32", "attention_flash"), ("cpu-fp32", "attention_baseline")]
SHAPES = [Attention(1, 32, 512, 512, 128, "causal", causal=True),
          Attention(8, 32, 1, 640, 128, "causal", causal=True, kv_cache=True),
          Attention(2, 10, 4096, 4096, 64, "self"), Attention(2, 8, 4096, 77, 40, "cross")]


@pytest.mark.parametrize("profile, kind", MULTI_HEAD_KINDS)
def test_multi_head_points_predict_alike_in_either_feature_set(profile, kind):
    data = load_profile(shipped_profile(profile))
    entry = data["kinds"][kind]
    by_set = {features: predictor_of(kind, data["dtype"], {**entry, "features": features})
              for features in ("attention", "attention-gqa")}
    multi_head, grouped = ([p.predict(s) for s in SHAPES] for p in by_set.values())
    assert grouped == multi_head


# -- LLaMA-3.1 ---------------------------------------------------------------------------------------------------

def layer_params(dim, kv_dim, mlp):
    return 2 * dim * dim + 2 * dim * kv_dim + 3 * dim * mlp + 2 * dim  # q, o; k, v; gate, up, down; two norms


@pytest.mark.parametrize("name, published", [("llama3.1-8b", 8.03e9), ("llama3.1-70b", 70.6e9)])
def test_llama31_parameters_match_the_published_counts(name, published):
    params = build(name).stage("prefill").graph(1).totals.params
    assert params == pytest.approx(published, rel=0.01)
    if name == "llama3.1-8b":  # embedding + untied head + 32 layers + final norm: the checkpoint's exact count
        assert params == 2 * 128256 * 4096 + 32 * layer_params(4096, 1024, 14336) + 4096 == 8_030_261_248


def test_llama31_8b_prefill_flops_by_hand():
    t, dim, kv_dim, mlp = 512, 4096, 1024, 14336
    linear = 2 * t * (2 * dim * dim + 2 * dim * kv_dim + 3 * dim * mlp)  # per layer
    attention = 4 * 32 * (t * (t + 1) // 2) * 128  # causal: QK^T and PV over the unmasked pairs, 32 query heads
    head = 2 * dim * 128256  # logits of the last position only
    graph = build("llama3.1-8b", prompt_tokens=t).stage("prefill").graph(1)
    assert graph.totals.mac_flops == 32 * (linear + attention) + head


def test_llama31_decode_reads_a_cache_of_8_kv_heads():
    graph = build("llama3.1-8b", prompt_tokens=512).stage("decode").graph(1)
    assert {(op.shape.heads, op.shape.kv_heads) for op in graph.attention_ops} == {(32, 8)}
    assert graph.kv_cache_bytes == 32 * 2 * 8 * 513 * 128 * 2  # layers x (K, V) x heads x positions x d x bf16
    seventy = build("llama3.1-70b").stage("decode").graph(1)
    assert seventy.kv_cache_bytes == 80 * 2 * 8 * 513 * 128 * 2  # 8 KV heads of 128 in 80 layers


def test_llama31_8b_matches_the_lowered_transformers_model():
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from workloads import llama3
    from workloads.modules import module_graph

    cfg = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 2, "num_attention_heads": 32,
           "num_key_value_heads": 8, "vocab_size": 128256, "max_position_embeddings": 131072,
           "rms_norm_eps": 1e-5, "rope_theta": 500000.0}
    lowered = module_graph("transformers:LlamaForCausalLM", "llama2-7b", cfg=cfg)
    model = llama3.Llama3("llama3.1-8b-2", "2 layers", llama3.LLAMA31_8B.layer, 2)
    written = llama3.workload(model).build(prompt_tokens=512).stage("prefill").graph(1)
    assert lowered.totals.flops == pytest.approx(written.totals.flops, rel=0.01)

    def calls(graph):
        return Counter((a.q_len, a.kv_len, a.heads, a.kv_heads, a.head_dim, a.causal)
                       for a in (op.shape for op in graph.attention_ops))

    assert calls(lowered) == calls(written) == Counter({(512, 512, 32, 8, 128, True): 2})
