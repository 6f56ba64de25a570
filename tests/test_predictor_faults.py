"""Two predictor faults with known answers: decode attention's per-block cost, and a linear's bias as a feature."""

import math

import pytest

from emulator.cost.predictor import BIAS_FEATURE, Curve, KindPredictor, curve_seconds, fit_predictor, work_items
from emulator.devices import device
from emulator.ops import Op
from emulator.shapes import Attention, Linear

# NVIDIA aiconfigurator-core 0.12.0 (Apache-2.0), systems/data/a100_sxm/attention/vllm/0.14.0/
# generation_attention_perf.parquet: vllm_flash_attn decode, bf16, head_dim 128, num_heads ==
# num_key_value_heads, isl 1; latency in us by (batch_size, num_heads, cached positions isl + step).
A100_DECODE_US = {
    (1, 1, 2): 10.67, (2, 1, 2): 10.79, (4, 1, 2): 10.69, (8, 1, 2): 10.85, (16, 1, 2): 11.18, (32, 1, 2): 10.99,
    (64, 1, 2): 11.1, (128, 1, 2): 14.03, (256, 1, 2): 18.34, (512, 1, 2): 25.2, (1024, 1, 2): 42.07,
    (2048, 1, 2): 74.64, (2048, 2, 2): 139.78, (2048, 4, 2): 270.29, (2048, 8, 2): 518.77,
    # Longer caches, which tell the bytes' rate apart from the blocks' cost (one block alone streams its
    # cache at ~22 GB/s: 67 MB in 3017 us).
    (1, 1, 8192): 193.39, (1, 1, 131072): 3017.4, (64, 1, 131072): 3245.49, (64, 8, 16384): 2846.69,
    (1024, 8, 128): 372.88, (1024, 4, 512): 700.35, (1024, 4, 1024): 1245.07, (1024, 1, 4096): 1347.38,
}


def decode(batch, heads, kv=2):
    return Attention(batch, heads, 1, kv, 128, "causal", causal=True, kv_cache=True)


def test_work_items_are_attention_thread_blocks_and_nothing_else():
    assert work_items("attention_flash", Attention(2, 8, 300, 300, 64)) == 2 * 8 * 3  # ceil(300 / 128) tiles
    assert work_items("attention_fa2", decode(2048, 8)) == 16384
    assert work_items("linear", Linear(4096, 4096, 4096)) == 0
    assert work_items("attention_baseline", decode(2048, 8)) == 0  # batched matmuls and a softmax, tiled otherwise


def test_a_curve_without_item_terms_is_the_two_term_roofline_and_round_trips():
    curve = Curve(50e12, 1e12, 4e-6)
    f, b = 3e9, 7e6
    assert curve(f, b) == 4e-6 + ((f / 50e12) ** 4 + (b / 1e12) ** 4) ** 0.25  # bit for bit
    assert curve(f, b, 10_000) == curve(f, b)  # no item terms: items do not matter
    assert set(curve.asdict()) == {"flops_per_s", "bytes_per_s", "overhead_s", "cache_bytes",
                                   "cache_bytes_per_s", "cache_sharpness"}  # profile files as they were
    with_items = Curve(50e12, 1e12, 4e-6, 40e6, 3e12, 4.0, s_per_item=3e-8, fill_items=40.0)
    assert Curve(**with_items.asdict()) == with_items and Curve(**curve.asdict()) == curve
    # A kind without work items is fitted without item terms.
    linears = [Linear(m, 1024, 1024) for m in (1, 16, 256, 4096)]
    fitted = fit_predictor("linear", "fp16", linears, [curve(Op("", s, "fp16").flops, Op("", s, "fp16").bytes)
                                                        for s in linears]).curve
    assert fitted.s_per_item == 0.0 and fitted.fill_items == 0.0
    # Nor is a kind whose overhead is given (large kernels only: a floor and a per-block cost look alike).
    prefills = [Attention(16384 // s, 16, s, s, 128) for s in (512, 1024, 2048, 4096, 8192)]
    fitted = fit_predictor("attention_flash", "fp16", prefills, [1e-3 * s / 512 for s in (512, 1024, 2048, 4096, 8192)],
                           overhead_s=4e-6).curve
    assert fitted.s_per_item == 0.0 and fitted.fill_items == 0.0


def test_a_decode_family_from_a_known_formula_gives_back_its_floor_and_per_block_cost():
    # t = 10 us + smoothmax(idle x bytes / 1.5 TB/s, 30 ns x blocks), idle = smoothmax(1, 40 / blocks): a
    # floor, a per-(sequence, head) cost, and a device that 40 blocks keep busy (FLOPs negligible here).
    truth = Curve(flops_per_s=100e12, bytes_per_s=1.5e12, overhead_s=10e-6, s_per_item=30e-9, fill_items=40.0)
    shapes = [decode(b, h, kv) for b in (1, 4, 16, 64, 256, 1024, 2048) for h in (1, 8) for kv in (2, 128, 1024, 8192)]
    seconds = [curve_seconds("attention_flash", "bf16", truth, s) for s in shapes]
    fitted = fit_predictor("attention_flash", "bf16", shapes, seconds).curve
    assert fitted.overhead_s == pytest.approx(10e-6, rel=0.05)
    assert fitted.s_per_item == pytest.approx(30e-9, rel=0.05)
    assert fitted.fill_items == pytest.approx(40.0, rel=0.1)
    assert fitted.bytes_per_s == pytest.approx(1.5e12, rel=0.05)


def test_measured_a100_decode_steps_give_a_floor_and_31_ns_a_sequence_head():
    # At two cached positions: flat at ~10.7 us up to ~32 sequence-heads, then linear, (518.77 - 10.67) us
    # / 16384 = 31.0 ns each. A FLOP/byte curve cannot follow it: the 25 MB of the 2048 x 8 step take
    # 12 us at 2 TB/s.
    shapes = [decode(*key) for key in A100_DECODE_US]
    seconds = [us * 1e-6 for us in A100_DECODE_US.values()]
    p = fit_predictor("attention_fa2", "bf16", shapes, seconds, device("a100-sxm4-80gb"))
    assert p.curve.s_per_item == pytest.approx(31.0e-9, rel=0.05)
    assert p.curve.overhead_s == pytest.approx(10.5e-6, rel=0.05)
    for key, us in A100_DECODE_US.items():  # the curve alone, without the neighbours' correction
        assert p.curve_time(decode(*key)) == pytest.approx(us * 1e-6, rel=0.15), key


TRUE_CURVE = Curve(flops_per_s=50e12, bytes_per_s=1e12, overhead_s=4e-6)


def curve_time(s):
    op = Op("", s, "fp16")
    return TRUE_CURVE(op.flops, op.bytes)


def test_a_bias_free_shape_among_bias_true_points_only_is_a_stated_distance_from_them():
    # bias=True GEMMs measured at 1.5x the curve (the measured H100 profile's bias=True GEMMs take 1.28x
    # the bias-free time at 8192 x 320 x 320, 1.71x at 622592 x 320 x 320). A bias-free shape at one of
    # them is ln(BIAS_FEATURE) = 2 away: with points 1.25x apart (spacing ln 1.25) beyond two spacings,
    # so not covered and the curve alone.
    dense = [Linear(m, 1024, 1024) for m in (1024, 1280, 1600, 2000, 2500)]
    p = KindPredictor("linear", "fp16", TRUE_CURVE, dense, [1.5 * curve_time(s) for s in dense])
    query = Linear(1600, 1024, 1024, bias=False)
    assert math.log(BIAS_FEATURE) == 2.0
    assert not p.covers(query) and p.predict(query) == pytest.approx(curve_time(query), rel=1e-12)
    assert p.predict(Linear(1600, 1024, 1024)) == pytest.approx(1.5 * curve_time(Linear(1600, 1024, 1024)))
    # Points 4x apart (spacing ln 4): 2 / ln 4 = 1.44 spacings, the correction ln 1.5 faded to 2 - 1.44 of it.
    sparse = [Linear(m, 1024, n) for m in (16, 64, 256, 1024, 4096) for n in (256, 1024, 4096)]
    p = KindPredictor("linear", "fp16", TRUE_CURVE, sparse, [1.5 * curve_time(s) for s in sparse])
    trust = 2.0 - 2.0 / math.log(4.0)
    assert p.covers(query := Linear(256, 1024, 1024, bias=False))
    assert p.predict(query) / curve_time(query) == pytest.approx(1.5**trust, rel=1e-3)


def test_a_bias_free_shape_follows_bias_free_neighbours_where_the_profile_has_them():
    # Every GEMM measured with and without a bias, the bias at 1.5x; the bias-free 1024 x 1024 x 1024 held
    # out. Without the feature its bias=True twin (distance 0) gave 1.5x the truth.
    def truth(s):
        return curve_time(s) * (1.5 if s.bias else 1.0)

    held = Linear(1024, 1024, 1024, bias=False)
    shapes = [Linear(m, k, n, bias) for m in (64, 256, 1024, 4096) for k in (256, 1024, 4096) for n in (256, 1024, 4096)
              for bias in (True, False) if Linear(m, k, n, bias) != held]
    p = fit_predictor("linear", "fp16", shapes, [truth(s) for s in shapes])
    assert p.covers(held)
    assert p.predict(held) == pytest.approx(truth(held), rel=0.05)
    assert p.predict(Linear(1024, 1024, 1024)) == pytest.approx(truth(Linear(1024, 1024, 1024)), rel=1e-9)


def test_where_the_bias_is_fused_at_no_cost_a_named_feature_set_keeps_bias_free_shapes_neighbours():
    # CPU libraries add the bias in the GEMM (the CPU profile's twins: 0.94-1.15x): "linear-fused-bias"
    # leaves the flag out, so a bias-free shape at a bias=True point gets that point's time.
    shapes = [Linear(m, 1024, 1024) for m in (1024, 1280, 1600, 2000, 2500)]
    seconds = [1.5 * curve_time(s) for s in shapes]
    p = KindPredictor("linear", "fp16", TRUE_CURVE, shapes, seconds, features="linear-fused-bias")
    query = Linear(1600, 1024, 1024, bias=False)
    assert p.covers(query) and p.predict(query) / p.curve_time(query) == pytest.approx(1.5, rel=1e-9)
    assert p.x.shape == (5, 4)  # [points, features]: m, k, n, one-row flag
