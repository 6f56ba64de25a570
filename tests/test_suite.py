"""The eight workloads: each builds, and each has the structure the study describes."""

import pytest

import workloads
from emulator.errors import UserError

STUDY = ["llama2-7b", "imagen", "stable-diffusion", "muse", "parti", "prod-image", "make-a-video", "phenaki"]


def variants(graph):
    return {op.shape.variant for op in graph.attention_ops}


IMAGE_DITS = ["flux1-dev", "flux1-schnell", "sd3.5-large", "sd3.5-medium", "pixart-sigma"]
VIDEO_DITS = ["cogvideox-5b", "hunyuanvideo", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "ltx-video"]
LLMS = ["llama3.1-8b", "llama3.1-70b"]


def test_registry_holds_the_study_suite_then_the_dits_then_the_llms():
    assert list(workloads.STUDY_SUITE) == STUDY
    assert list(workloads.WORKLOADS) == STUDY + IMAGE_DITS + VIDEO_DITS + LLMS


@pytest.mark.parametrize("name", STUDY)
def test_every_workload_builds_a_valid_pipeline(name, default_pipelines):
    p = default_pipelines[name]
    assert p.stages and p.params_total > 0
    for s in p.stages:
        g = s.graph()
        assert len(g) > 0 and g.totals.flops > 0
        assert all(op.name.startswith(s.name + ".") for op in g)


def test_guidance_doubles_the_batch_of_guided_stages():
    on = workloads.build("stable-diffusion", guidance=True, batch=3)
    off = workloads.build("stable-diffusion", guidance=False, batch=3)
    assert on.stage("unet").batch == 6 and off.stage("unet").batch == 3
    assert on.stage("vae_decoder").batch == 3


def test_llama_prefill_and_decode_share_weights(default_pipelines):
    p = default_pipelines["llama2-7b"]
    assert p.params_total == p.stage("prefill").graph().totals.params
    decode = p.stage("decode")
    first = decode.graph().attention_ops[0].shape
    assert (first.q_len, first.kv_len, first.causal, first.kv_cache) == (1, 513, True, True)


def test_parti_decodes_1024_tokens_with_a_growing_cache(default_pipelines):
    decoder = default_pipelines["parti"].stage("decoder")
    assert decoder.calls == 1024 and decoder.kv_growth == 1
    ops = decoder.graph().attention_ops
    assert {op.shape.variant for op in ops} == {"causal", "cross"}
    assert decoder.graph(call=1023).attention_ops[0].shape.kv_len == 1024
    assert len(ops) == 2 * 64


def test_imagen_highest_resolution_sr_has_no_self_attention(default_pipelines):
    p = default_pipelines["imagen"]
    assert variants(p.stage("sr_1024").graph()) == {"cross"}
    assert variants(p.stage("sr_256").graph()) == {"self", "cross"}
    base = p.stage("base_unet").graph()
    assert {op.shape.q_len for op in base.attention_ops} == {32 * 32, 16 * 16, 8 * 8}
    assert {op.shape.head_dim for op in base.attention_ops} == {64}


def test_muse_sequence_lengths_are_constant_over_steps(default_pipelines):
    p = default_pipelines["muse"]
    assert {op.shape.q_len for op in p.stage("base_transformer").graph().attention_ops} == {256}
    assert {op.shape.q_len for op in p.stage("sr_transformer").graph().attention_ops} == {4096}
    assert p.stage("base_transformer").calls == 24 and p.stage("sr_transformer").kv_growth == 0


def test_make_a_video_has_spatial_and_temporal_attention(default_pipelines):
    p = default_pipelines["make-a-video"]
    decoder = p.stage("decoder").graph()
    assert variants(decoder) == {"spatial", "temporal", "cross"}
    temporal = [op.shape for op in decoder.attention_ops if op.shape.variant == "temporal"]
    assert {a.q_len for a in temporal} == {16}
    assert {op.shape.q_len for op in p.stage("interpolation").graph().attention_ops
            if op.shape.variant == "temporal"} == {76}
    assert any(op.kind == "conv1d" for op in decoder)


def test_phenaki_tokens_follow_the_frame_count():
    p = workloads.build("phenaki", frames=11)
    assert {op.shape.q_len for op in p.stage("maskgit").graph().attention_ops if op.shape.variant == "self"} == {6 * 256}
    temporal = [op.shape for op in p.stage("cvivit_decoder").graph().attention_ops if op.shape.variant == "temporal"]
    assert temporal and all(a.causal and a.q_len == 6 for a in temporal)


def test_sd_latent_follows_image_size():
    g = workloads.build("stable-diffusion", image_size=256).stage("unet").graph()
    assert {op.shape.q_len for op in g.attention_ops if op.shape.variant == "self"} == {1024, 256, 64, 16}


@pytest.mark.parametrize("name, knobs, message", [
    ("dall-e", {}, "unknown workload"),
    ("stable-diffusion", {"image_size": 500}, "multiple of 64"),
    ("stable-diffusion", {"image_size": 2048}, "multiple of 64"),
    ("make-a-video", {"frames": 0}, "positive integer"),
    ("phenaki", {"frames": 10}, r"1 \+ a multiple of 2"),
    ("llama2-7b", {"batch": -1}, "positive integer"),
    ("llama2-7b", {"image_size": 512}, "takes no --image-size"),
    ("stable-diffusion", {"dtype": "int4"}, "--dtype"),
])
def test_bad_knobs_are_user_errors(name, knobs, message):
    with pytest.raises(UserError, match=message):
        workloads.build(name, **knobs)
