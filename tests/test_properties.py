"""Scaling laws the lowering must obey, checked with hypothesis over the knobs."""

from hypothesis import given, settings
from hypothesis import strategies as st

import workloads
from emulator import similarity

FAST = settings(max_examples=8, deadline=None)
CHEAP = ["llama2-7b", "stable-diffusion", "muse", "parti", "phenaki"]


def attention_macs(graph, variant):
    return sum(op.mac_flops for op in graph.attention_ops if op.shape.variant == variant)


@FAST
@given(name=st.sampled_from(CHEAP), batch=st.integers(2, 6))
def test_flops_are_linear_in_batch(name, batch):
    one = workloads.build(name, batch=1)
    many = workloads.build(name, batch=batch)
    for s1, sn in zip(one.stages, many.stages):
        assert sn.graph().totals.flops == batch * s1.graph().totals.flops, s1.name
        assert sn.request_totals().flops == batch * s1.request_totals().flops, s1.name


@FAST
@given(size=st.sampled_from([64, 128, 192, 256, 320, 384, 448, 512]))
def test_self_attention_flops_are_quadratic_in_tokens(size):
    # Doubling the image side quadruples the tokens: self-attention x16, cross-attention x4.
    small = workloads.build("stable-diffusion", image_size=size, guidance=False).stage("unet").graph()
    large = workloads.build("stable-diffusion", image_size=2 * size, guidance=False).stage("unet").graph()
    assert attention_macs(large, "self") == 16 * attention_macs(small, "self")
    assert attention_macs(large, "cross") == 4 * attention_macs(small, "cross")


@FAST
@given(frames=st.integers(2, 8))
def test_temporal_attention_is_quadratic_in_frames_and_spatial_linear(frames):
    def decoder(f):
        return workloads.build("make-a-video", frames=f, guidance=False).stage("decoder").graph()

    small, large = decoder(frames), decoder(2 * frames)
    assert attention_macs(large, "temporal") == 4 * attention_macs(small, "temporal")
    assert attention_macs(large, "spatial") == 2 * attention_macs(small, "spatial")
    assert attention_macs(small, "temporal") > 0


@FAST
@given(size=st.sampled_from([64, 128, 256, 512, 768, 1024]), batch=st.integers(1, 3))
def test_similarity_formula_equals_the_graph_for_sd(size, batch):
    p = workloads.build("stable-diffusion", image_size=size, batch=batch)
    unet = p.stage("unet")
    assert unet.similarity_formula(unet.batch) == unet.graph().totals.similarity_bytes


def test_digest_formula_by_hand_at_512():
    # Latent 64x64 (S = 4096), 77 text tokens, three attending levels and the bottom at 8x8:
    # 2 * [2 * (4096*4173 + 1024*1101 + 256*333) + 64*141]
    by_hand = 2 * (2 * (4096 * 4173 + 1024 * 1101 + 256 * 333) + 64 * 141)
    assert similarity.digest_unet_bytes(64, 64, 77, depth=3) == by_hand


@FAST
@given(latent=st.sampled_from([8, 16, 32, 64, 128]), text=st.integers(1, 300))
def test_digest_formula_is_the_one_visit_one_head_case(latent, text):
    s = latent * latent
    levels = [(s, 2, 2), (s // 4, 2, 2), (s // 16, 2, 2), (s // 64, 1, 1)]
    assert similarity.digest_unet_bytes(latent, latent, text, depth=3) == similarity.level_bytes(levels, text)


@FAST
@given(prompt=st.integers(1, 64), out=st.integers(2, 12), batch=st.integers(1, 3))
def test_decode_totals_over_calls_equal_the_sum_of_every_call(prompt, out, batch):
    p = workloads.build("llama2-7b", prompt_tokens=prompt, output_tokens=out, batch=batch)
    decode = p.stage("decode")
    brute = sum(decode.graph(call=i).totals.flops for i in range(decode.calls))
    brute_bytes = sum(decode.graph(call=i).totals.bytes for i in range(decode.calls))
    assert decode.request_totals().flops == brute
    assert decode.request_totals().bytes == brute_bytes
    last = decode.graph(call=decode.calls - 1).attention_ops[0].shape
    assert last.kv_len == prompt + out - 1
