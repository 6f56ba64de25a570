"""What the calibration grid reaches: long bidirectional attention, causal prefill, decode, linears with and
without a bias; that a GPU's plan keeps it; that `quick` stays small and the long attention stays cheap."""

from __future__ import annotations

from dataclasses import replace

import pytest

from calibration.gpu import CudaSetup, set_bytes_limit
from calibration.grid import (ATTENTION_MAX_FLOPS, BASELINE_MAX_SIMILARITY_ELEMENTS, LONG_TOKENS, grid, spec_key)
from calibration.plan import plan
from emulator.cost.kernels import attention_of_kind, shape_class, work
from emulator.cost.predictor import Curve, KindPredictor
from emulator.devices import device
from emulator.ops import Op
from emulator.shapes import Attention

QUICK_MAX_SPECS = 100
# One run of every attention shape of the full grid (both implementations) at 400 TFLOP/s: at most this.
ATTENTION_GPU_S_BOUND = 2.0
FLOPS_PER_S = 400e12


@pytest.fixture(scope="module")
def full():
    return grid(quick=False)


def attention(specs, kind: str, cls: str) -> list[Attention]:
    return [s for k, s in specs if k == kind and shape_class(s) == cls]


@pytest.mark.parametrize("kind", ["attention_flash", "attention_baseline"])
def test_every_shape_class_under_both_implementations(full, kind):
    for cls in ("bidirectional", "causal", "decode"):
        assert attention(full, kind, cls), (kind, cls)


def test_flash_attention_reaches_128k_tokens_at_head_dims_64_and_128(full):
    long = attention(full, "attention_flash", "bidirectional")
    assert max(LONG_TOKENS) == 131072
    for d in (64, 128):
        assert {s.q_len for s in long if s.head_dim == d and s.q_len == s.kv_len} >= set(LONG_TOKENS)


def test_baseline_attention_stops_where_its_similarity_matrices_fill_a_gpu(full):
    baseline = [s for k, s in full if k == "attention_baseline"]
    assert max(s.similarity_elements for s in baseline) <= BASELINE_MAX_SIMILARITY_ELEMENTS
    assert 4 * BASELINE_MAX_SIMILARITY_ELEMENTS <= 80e9 * 0.75  # two fp16 matrices within 75% of 80 GB
    assert max(s.q_len for s in baseline) == 65536  # one head at 64k tokens: 16 GiB; 128k would take 64
    assert all(s.flops <= ATTENTION_MAX_FLOPS for k, s in full if k.startswith("attention_"))


def test_causal_prefill_and_decode_shapes_as_llm_workloads_write_them(full):
    causal = attention(full, "attention_flash", "causal")
    assert all(s.causal and s.q_len == s.kv_len and s.variant == "causal" for s in causal)
    assert max(s.q_len for s in causal) == 32768
    decode = attention(full, "attention_flash", "decode")
    assert all(s.causal and s.kv_cache and s.q_len == 1 and s.variant == "causal" for s in decode)
    small_kv = {s.batch * s.heads for s in decode if s.kv_len == 128}
    assert small_kv == {2**i for i in range(15)}  # 1 .. 16384 sequence-heads by factors of 2
    assert max(s.kv_len for s in decode) == 32768
    assert Attention(256, 32, 1, 128, 128, "causal", causal=True, kv_cache=True) in decode


def test_every_linear_shape_with_and_without_a_bias(full):
    linear = [s for k, s in full if k == "linear"]
    with_bias = {(s.m, s.k, s.n) for s in linear if s.bias}
    without = {(s.m, s.k, s.n) for s in linear if not s.bias}
    assert with_bias == without and len(without) >= 100


def test_quick_grid_stays_small_and_holds_each_class():
    quick = grid(quick=True)
    assert len(quick) <= QUICK_MAX_SPECS
    assert {shape_class(s) for k, s in quick if k == "attention_flash"} == {"bidirectional", "causal", "decode"}
    assert any(k == "linear" and not s.bias for k, s in quick)


def test_attention_of_the_full_grid_runs_once_within_the_stated_gpu_time(full):
    flops = sum(work(Op("", s, "fp16"), attention_of_kind(k))[0] for k, s in full if k.startswith("attention_"))
    assert flops / FLOPS_PER_S <= ATTENTION_GPU_S_BOUND


def test_an_80gb_gpu_plans_every_grid_shape(full):
    """With the GPU setup's limits on an H100 80GB, nothing of the grid is skipped for memory or time."""
    h100 = device("h100-sxm")
    limits = replace(CudaSetup.limits, max_set_bytes=set_bytes_limit(int(h100.memory_bytes)))
    specs = list({spec_key(k, s): (k, s) for k, s in full}.values())
    todo, skipped = plan(specs, "fp16", limits, h100)
    assert not skipped and len(todo) == len(specs)


def test_video_transformer_and_decode_shapes_fall_near_measured_ones(full):
    """A profile measured at the grid's flash shapes covers a video DiT's 24k-75k-token attention and
    LLaMA decode at 32 heads, so the predictor corrects the curve there rather than falling back to it."""
    shapes = [s for k, s in full if k == "attention_flash"]
    predictor = KindPredictor("attention_flash", "fp16", Curve(4e14, 2e12, 1e-5), shapes, [1e-3] * len(shapes))
    for s in (Attention(2, 24, 75600, 75600, 128, "self"), Attention(1, 48, 24000, 24000, 64, "self"),
              Attention(1, 32, 1, 640, 128, "causal", causal=True, kv_cache=True),
              Attention(64, 32, 1, 4096, 128, "causal", causal=True, kv_cache=True)):
        assert predictor.covers(s), s
