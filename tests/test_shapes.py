"""Operator shapes: FLOPs, elements and validation, against hand calculations."""

import pytest

from emulator.ops import Op
from emulator.shapes import (
    Attention,
    Conv,
    Elementwise,
    Embedding,
    Linear,
    Matmul,
    Norm,
    Resample,
)


def test_linear_counts_two_flops_per_multiply_add_plus_bias():
    s = Linear(m=3, k=5, n=7)
    assert s.mac_flops == 2 * 3 * 5 * 7
    assert s.flops == 2 * 3 * 5 * 7 + 3 * 7
    assert s.weight_elements == 5 * 7 + 7
    assert Linear(3, 5, 7, bias=False).weight_elements == 35


def test_linear_bytes_are_input_weights_output_in_dtype():
    op = Op("x", Linear(4, 8, 16, bias=False), "fp16")
    assert op.bytes == 2 * (4 * 8 + 8 * 16 + 4 * 16)
    assert Op("x", Linear(4, 8, 16, bias=False), "fp32").bytes == 2 * op.bytes


def test_conv_same_padding_and_stride():
    # 3x3 stride-2 conv of [2, 320, 64, 64] -> [2, 320, 32, 32]: the SD downsampler.
    s = Conv(2, 320, 320, (64, 64), (3, 3), stride=2)
    assert s.out_size == (32, 32)
    assert s.mac_flops == 2 * 2 * 320 * 32 * 32 * 320 * 9
    assert s.weight_elements == 320 * 320 * 9 + 320
    assert s.kind == "conv2d"


def test_temporal_conv_is_a_1d_conv_over_frames():
    s = Conv(batch=4096, c_in=320, c_out=320, size=(16,), kernel=(3,))
    assert s.kind == "conv1d"
    assert s.mac_flops == 2 * 4096 * 320 * 16 * 320 * 3


def test_grouped_conv_divides_the_reduction():
    assert Conv(1, 8, 8, (4, 4), (3, 3), groups=8).mac_flops == 2 * 8 * 16 * 1 * 9


def test_attention_flops_and_similarity_matrix():
    a = Attention(batch=2, heads=8, q_len=4096, kv_len=77, head_dim=40, variant="cross")
    assert a.mac_flops == 2 * (2 * 2 * 8 * 4096 * 77 * 40)  # QK^T and PV
    assert a.similarity_elements == 2 * 8 * 4096 * 77
    assert Op("a", a, "fp16").similarity_bytes == 2 * 2 * 8 * 4096 * 77


def test_causal_attention_counts_unmasked_pairs():
    # Prefill of 4 tokens: 1 + 2 + 3 + 4 = 10 pairs; decode against 9 cached keys: 9 pairs.
    assert Attention(1, 1, 4, 4, 8, "causal", causal=True).pairs == 10
    assert Attention(1, 1, 1, 9, 8, "causal", causal=True).pairs == 9
    # Two new tokens after 3 cached ones: the first sees 4 keys, the second 5.
    assert Attention(1, 1, 2, 5, 8, "causal", causal=True).pairs == 9
    # The similarity matrix of a baseline kernel is the full square regardless.
    assert Attention(1, 1, 4, 4, 8, "causal", causal=True).similarity_elements == 16


def test_advancing_a_kv_cache_grows_only_kv_len():
    a = Attention(2, 32, 1, 513, 128, "causal", causal=True, kv_cache=True)
    b = a.advanced(10)
    assert (b.q_len, b.kv_len, b.batch, b.heads) == (1, 523, 2, 32)
    assert b.kv_cache_elements == 2 * 2 * 32 * 523 * 128


def test_norms_elementwise_resample_embedding():
    assert Norm("group", 1000, 10, 5).category == "GroupNorm"
    assert Norm("rms", 1000, 10).category == "LayerNorm"
    assert Norm("layer", 1000, 10).weight_elements == 20
    assert Elementwise("add", 100, inputs=2).input_elements == 200
    up = Resample("up", 1, 4, (8, 8))
    assert up.out_size == (16, 16) and up.output_elements == 4 * 256
    e = Embedding(tokens=77, vocab=49408, dim=768)
    assert e.weight_elements == 49408 * 768 and e.output_elements == 77 * 768
    # A lookup reads only the rows it gathers: ids + 77 rows + output.
    assert Op("e", e, "fp16").bytes == 2 * (77 + 77 * 768 + 77 * 768)


def test_matmul_has_no_weights():
    m = Matmul(4, 2, 3, 5)
    assert m.weight_elements == 0 and m.mac_flops == 2 * 4 * 2 * 3 * 5


@pytest.mark.parametrize("bad", [
    lambda: Linear(0, 1, 1),
    lambda: Attention(1, 1, 5, 4, 8, "causal", causal=True),
    lambda: Attention(1, 1, 1, 1, 8, "diagonal"),
    lambda: Conv(1, 3, 4, (8, 8), (3,)),
    lambda: Conv(1, 3, 4, (8, 8), (3, 3), groups=2),
    lambda: Norm("batch", 10, 1),
    lambda: Elementwise("tanh2", 10),
    lambda: Op("x", Linear(1, 1, 1), "int3"),
])
def test_impossible_shapes_are_refused(bad):
    with pytest.raises(ValueError):
        bad()
