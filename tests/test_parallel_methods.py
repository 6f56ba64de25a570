"""PipeFusion, VAE patch-parallel decode (spatial), per-rank memory and grouped-query Ulysses.

Reference values are hand-computed from the Wan 2.1 14B configuration (width 5120 = 40 heads x 128, MLP
13824, latent 21 x 60 x 104 at 480x832 and 81 frames -> 21 x 30 x 52 = 32,760 tokens, bf16 = 2 bytes,
batch 1); each test's comment shows the arithmetic.
"""

import json

import pytest

from emulator.builder import GraphBuilder
from emulator.cli import main
from emulator.errors import UserError
from emulator.parallel import ParallelPlan, check, graph_memory, overlaps, parse_plan, rank_memory, shard
from emulator.parallel.pipefusion import layers, split_layers
from emulator.shapes import Attention, Collective, Conv
from workloads import build
from workloads.blocks.video_dit import VideoDiTSpec, wan

TOKENS, WIDTH, MLP = 32760, 5120, 13824


def wan_blocks(layers: int):
    b = GraphBuilder("bf16")
    wan(b, VideoDiTSpec("wan", WIDTH, 40, MLP, layers, 4096), 1, 21, 60, 104, 512)
    return b.build()


@pytest.fixture(scope="module")
def four():
    return wan_blocks(4)


@pytest.fixture(scope="module")
def wan_vae():
    return build("wan2.1-t2v-14b", steps=1).stage("vae_decoder").graph()


def comms(g, kind):
    return [op for op in g.ops if isinstance(op.shape, Collective) and op.shape.op == kind]


# -- PipeFusion ---------------------------------------------------------------------------------------------
def test_pipefusion_rank_holds_its_layers_per_patch(four):
    assert layers(four) == [f"blocks.{i}" for i in range(4)]
    assert split_layers(four, 2) == [["blocks.0", "blocks.1"], ["blocks.2", "blocks.3"]]
    g = shard(four, ParallelPlan(pipefusion=2, patches=4))
    names = {op.name for op in g.ops}
    assert "blocks.0.ffn.out" in names and "blocks.1.ffn.out.patch.3" in names
    assert not any(n.startswith(("blocks.2.", "blocks.3.")) for n in names)
    # Patch queries against the full-length stale K/V: 32,760 / 4 = 8,190 queries, 32,760 keys.
    assert g.op("blocks.1.attn1.self.patch.2").shape == Attention(1, 40, 8190, TOKENS, 128, "self")
    assert g.op("blocks.0.attn1.to_q.patch.1").shape.m == 8190
    # One send per patch of [1, 8190, 5120] bf16: 8,190 x 5,120 x 2 = 83,865,600 bytes; 4 per step, i.e.
    # 335,462,400 bytes per step = the whole [32760, 5120] hidden state crossing each stage boundary once,
    # 167,731,200 bytes per layer of this 2-layer stage.
    sends = comms(g, "send_recv")
    assert len(sends) == 4 and {op.shape.elements * 2 for op in sends} == {83_865_600}
    assert sum(op.shape.elements * 2 for op in sends) / 2 == 167_731_200
    assert len(overlaps(g)) == 4  # every send overlaps the next patch's attention
    # Each patch writes its fresh K and V into the buffer: 2 x 8,190 x 40 x 128 = 83,865,600 elements.
    assert g.op("blocks.0.attn1.self.patch.3.kv_buffer").shape.elements == 83_865_600


def test_pipefusion_memory_shards_weights_and_holds_stale_kv(four):
    rank = graph_memory(shard(four, ParallelPlan(pipefusion=2, patches=4)))
    one = graph_memory(four)
    # Stale K/V of the rank's 2 layers, [2, 32760, 5120] bf16 each: 2 x 2 x 32,760 x 5,120 x 2 = 1,341,849,600.
    assert rank["kv_bytes"] == 1_341_849_600 and one["kv_bytes"] == 0
    block = sum(op.weight_bytes for op in four.ops if op.name.startswith("blocks.0."))
    assert rank["weight_bytes"] == one["weight_bytes"] - 2 * block  # the other stage's 2 blocks are gone
    assert rank["activation_peak_bytes"] < one["activation_peak_bytes"]


@pytest.mark.parametrize("text, message", [
    ("pipefusion=5", r"pipefusion=5 exceeds the stage's 4 layers; valid degrees: 2, 3, 4$"),
    ("pipefusion=4,patches=2", "patches=2 is fewer than pipefusion=4 stages"),
    ("patches=4", "give pipefusion=N too"),
    ("pipefusion=2,ulysses=2", "combines only with cfg"),
    ("pipefusion=2,patches=40000", "patches=40000 exceeds the sequence's 32760 tokens"),
])
def test_pipefusion_refusals_are_one_line(four, text, message):
    plan = parse_plan(f"transformer:{text}", ("transformer",)).for_stage("transformer")
    with pytest.raises(UserError, match=message) as e:
        check("transformer", four, plan)
    assert "\n" not in str(e.value)


# -- VAE patch parallel -------------------------------------------------------------------------------------
def test_spatial_vae_halo_and_gather(wan_vae):
    g = shard(wan_vae, ParallelPlan(spatial=4))
    # Latent 60 rows over 4 ranks: 15 each; conv_in [1, 16, 21, 60, 104] -> [1, 16, 21, 15, 104].
    assert g.op("vae_decoder.conv_in").shape == Conv(1, 16, 384, (21, 15, 104), (3, 3, 3))
    # One halo row to each neighbour before a 3x3x3 conv: [1, 16, 21, 1, 104] = 34,944 elements, 69,888 bytes;
    # before the mid block's conv1 [1, 384, 21, 1, 104] = 838,656 elements.
    up, down = (g.op(f"vae_decoder.conv_in.halo.{s}") for s in ("up", "down"))
    assert up.shape == down.shape == Collective("send_recv", 34_944, 2) and up.shape.elements * 2 == 69_888
    assert g.op("vae_decoder.mid.resnet.0.conv1.halo.up").shape.elements == 838_656
    # Temporal-only (3x1x1) and 1x1x1 convolutions exchange nothing; Wan's RMS norms reduce nothing.
    halos = comms(g, "send_recv")
    convs = [op for op in wan_vae.ops if isinstance(op.shape, Conv) and op.shape.kernel[-2] > 1]
    assert len(halos) == 2 * len(convs)
    assert not comms(g, "all_reduce")
    # The per-frame mid attention gathers K and V: [2, 21 frames, 1 head, 6240 = 60 x 104, 384] = 100,638,720.
    (kv,) = [op for op in comms(g, "all_gather") if "kv" in op.name]
    assert kv.shape.elements == 2 * 21 * 6240 * 384 == 100_638_720
    assert g.op("vae_decoder.mid.attention.attention").shape.q_len == 1560
    # The decoded video gathered: 4 x [1, 3, 81, 120, 832] = 3 x 81 x 480 x 832 = 97,044,480 elements.
    assert g.ops[-1].shape == Collective("all_gather", 97_044_480, 4)


def test_spatial_group_norm_all_reduces_its_statistics():
    vae = build("hunyuanvideo", steps=1, height=256, width=256, frames=9).stage("vae_decoder").graph()
    g = shard(vae, ParallelPlan(spatial=2))
    # Per sample and group a sum and a sum of squares: 1 x 32 groups x 2 = 64 elements.
    reduce = g.op("vae_decoder.mid.resnet.0.norm1.stats.all_reduce")
    assert reduce.shape == Collective("all_reduce", 64, 2)
    norms = [op for op in vae.ops if getattr(op.shape, "norm", "") == "group"]
    assert len(comms(g, "all_reduce")) == len(norms)


def test_spatial_refusals_are_one_line(wan_vae, four):
    with pytest.raises(UserError, match="splits a VAE's convolutions by rows, and the stage has none"):
        check("transformer", four, ParallelPlan(spatial=2))  # the patch embedding's stride-2 conv has no halo
    with pytest.raises(UserError, match="combines with no other degree"):
        check("vae_decoder", wan_vae, ParallelPlan(spatial=2, cfg=2))
    small = build("flux1-dev", steps=1, height=48, width=64).stage("vae_decoder").graph()  # latent 6 rows
    with pytest.raises(UserError, match=r"latent 6 rows\); valid degrees: 2, 3, 4, 5, 6$") as e:
        check("vae_decoder", small, ParallelPlan(spatial=8))
    assert "\n" not in str(e.value)


# -- per-rank memory -----------------------------------------------------------------------------------------
def test_tensor_parallel_weights_per_rank_by_hand():
    g = wan_blocks(1)
    rank = graph_memory(shard(g, ParallelPlan(tensor=4)))
    # Weight elements, tensor=4, by hand from the config:
    #   column q, k, v of both attentions: 6 x (5120 x 5120 + 5120) / 4 = 6 x 6,554,880 = 39,329,280
    #   row outputs of both attentions: 2 x (5120 x 5120 / 4 + 5120 bias, replicated) = 13,117,440
    #   MLP: (5120 x 13824 + 13824) / 4 + (13824 x 5120 / 4 + 5120) = 17,698,176 + 17,699,840 = 35,398,016
    #   QK RMS norms between column linear and attention: 4 x 5120 / 4 = 5,120
    #   unsharded: patch embedding 332,800, time MLP 1,315,840 + 26,219,520, modulation 157,317,120, text
    #   MLP 20,976,640 + 26,219,520, three block layer norms 30,720, output norm 10,240, output 327,744
    #   = 232,750,144
    assert rank["weight_bytes"] == 2 * (39_329_280 + 13_117_440 + 35_398_016 + 5_120 + 232_750_144)


def test_rank_memory_of_one_gpu_and_replicated_ulysses():
    stage = build("wan2.1-t2v-1.3b", steps=1).stage("transformer")
    one = rank_memory(stage, ParallelPlan())
    assert one == graph_memory(stage.graph())
    u = rank_memory(stage, ParallelPlan(ulysses=4))
    assert u["weight_bytes"] == one["weight_bytes"]  # Ulysses replicates the weights
    assert u["activation_peak_bytes"] < one["activation_peak_bytes"]


# -- grouped-query Ulysses ---------------------------------------------------------------------------------
def test_ulysses_kv_all_to_all_carries_kv_heads():
    b = GraphBuilder("bf16")
    x = b.input(1, 4096, 4096)
    q, k, v = (b.linear(f"{n}", x, 4096 if n == "q" else 1024) for n in "qkv")
    b.linear("o", b.attention("attn", q, k, v, 32, "self"), 4096)
    g = shard(b.build(), ParallelPlan(ulysses=4))
    # One rank's 1,024 tokens: q [1024, 32 x 128] = 4,194,304 elements; k and v [1024, 8 x 128] = 1,048,576.
    sizes = {op.name.rsplit("_", 1)[1]: op.shape.elements for op in comms(g, "all_to_all")}
    assert sizes == {"q": 4_194_304, "k": 1_048_576, "v": 1_048_576, "out": 4_194_304}


def test_describe_prints_memory_per_rank_and_the_bubble(capsys):
    args = ["describe", "wan2.1-t2v-1.3b", "--steps", "2", "--device", "h100-sxm", "--parallel",
            "transformer:pipefusion=2,cfg=2; vae_decoder:spatial=2"]
    assert main(args + ["--json"]) == 0
    transformer, vae = json.loads(capsys.readouterr().out)["parallel"]["stages"]
    assert transformer["pipeline_bubble_s"] > 0 and vae["pipeline_bubble_s"] == 0
    for s in (transformer, vae):
        assert set(s["memory_per_rank"]) == {"weight_bytes", "activation_peak_bytes", "kv_bytes", "total_bytes"}
    assert transformer["memory_per_rank"]["weight_bytes"] < transformer["memory_one_gpu"]["weight_bytes"]
    assert vae["memory_per_rank"]["weight_bytes"] == vae["memory_one_gpu"]["weight_bytes"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.count("memory per rank: weights") == 2 and "pipeline bubble" in text
