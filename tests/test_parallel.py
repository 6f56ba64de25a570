"""Parallel plans: parsing, validation against the graph, and one rank's graph with its communication.

Shapes and message sizes are checked by hand on one Wan 2.1 14B block at 480x832, 81 frames: 21 x 30 x 52 =
32,760 video tokens of width 5120 (40 heads x 128), bf16 (2 bytes), batch 1. Collective message sizes are as
NCCL counts them (`emulator.shapes.Collective`).
"""

import json

import pytest

from emulator.builder import GraphBuilder
from emulator.cli import main
from emulator.cost import cost_model, stage_time
from emulator.errors import UserError
from emulator.parallel import ParallelPlan, check, overlaps, parse_plan, ring, shard, tensor_parallel, ulysses
from emulator.parallel.stage import rank_stage
from emulator.shapes import Attention, Collective, Linear
from workloads import build
from workloads.blocks.video_dit import VideoDiTSpec, wan

TOKENS, WIDTH = 32760, 5120
BLOCK = VideoDiTSpec("wan", WIDTH, 40, 13824, 1, 4096)  # one Wan 2.1 14B block


@pytest.fixture(scope="module")
def block():
    b = GraphBuilder("bf16")
    wan(b, BLOCK, 1, 21, 60, 104, 512)  # latent 21 x 60 x 104 -> 21 x 30 x 52 tokens
    return b.build()


@pytest.fixture(scope="module")
def wan14b():
    return build("wan2.1-t2v-14b")


def comms(g, kind=None):
    return [op for op in g.ops if isinstance(op.shape, Collective) and (kind is None or op.shape.op == kind)]


# -- plans ------------------------------------------------------------------------------------------------
def test_plan_syntax_and_degree():
    plan = parse_plan("transformer:ulysses=4,cfg=2; vae_decoder:tensor=2", ("transformer", "vae_decoder"))
    t = plan.for_stage("transformer")
    assert (t.ulysses, t.ring, t.cfg, t.tensor, t.degree) == (4, 1, 2, 1, 8)
    assert plan.for_stage("text_encoder") == ParallelPlan()  # not named: one GPU
    assert plan.text() == "transformer:ulysses=4,cfg=2; vae_decoder:tensor=2"


@pytest.mark.parametrize("text, message", [
    ("transformer:foo=2", "DEGREE one of ulysses, ring, cfg, tensor"),
    ("unet:ulysses=2", "no stage 'unet'"),
    ("transformer:ulysses=0", "positive integer"),
    ("transformer:ulysses=2,ulysses=4", "given twice"),
    ("transformer", "STAGE:DEGREE=N"),
])
def test_bad_plan_text_is_one_line(text, message):
    with pytest.raises(UserError, match=message) as e:
        parse_plan(text, ("transformer",))
    assert "\n" not in str(e.value)


# -- validation ----------------------------------------------------------------------------------------------
def test_ulysses_must_divide_the_heads(wan14b):
    g = wan14b.stage("transformer").graph()
    with pytest.raises(UserError, match=r"ulysses=3 does not divide the attention heads \(40.*valid degrees: "
                                        r"2, 4, 5, 8$"):
        check("transformer", g, ParallelPlan(ulysses=3))
    for degree in (2, 4, 5, 8):
        check("transformer", g, ParallelPlan(ulysses=degree))
    with pytest.raises(UserError, match="ulysses=4 x tensor=4 = 16"):
        check("transformer", g, ParallelPlan(ulysses=4, tensor=4))


def test_hunyuan_heads_list_their_degrees():
    g = build("hunyuanvideo", steps=1).stage("transformer").graph()
    with pytest.raises(UserError, match="valid degrees: 2, 3, 4, 6, 8$"):
        check("transformer", g, ParallelPlan(ulysses=5))


def test_ring_must_divide_the_sequence(block):
    check("transformer", block, ParallelPlan(ring=7))  # 32,760 = 2^3 3^2 5 7 13
    with pytest.raises(UserError, match="does not divide the sequence of 32760 tokens"):
        check("transformer", block, ParallelPlan(ring=16))


def test_cfg_needs_two_guidance_passes(block):
    check("transformer", block, ParallelPlan(cfg=2), "two-calls", 1, 100)
    check("transformer", block, ParallelPlan(cfg=2), "batched", 2, 50)
    with pytest.raises(UserError, match="distilled"):
        check("transformer", block, ParallelPlan(cfg=2), "distilled", 1, 50)
    with pytest.raises(UserError, match="even batch"):
        check("transformer", block, ParallelPlan(cfg=2), "batched", 3, 50)
    with pytest.raises(UserError, match="only CFG degree is 2"):
        check("transformer", block, ParallelPlan(cfg=4), "batched", 4, 50)


def test_tensor_must_divide_the_widths(block):
    check("transformer", block, ParallelPlan(tensor=8))  # heads 40, widths 5120 and 13824
    with pytest.raises(UserError, match="tensor=3 does not divide the attention heads"):
        check("transformer", block, ParallelPlan(tensor=3))


# -- transforms --------------------------------------------------------------------------------------------
def test_degree_one_is_the_graph_itself(wan14b):
    stage = wan14b.stage("transformer")
    assert shard(stage.graph(), ParallelPlan()) is stage.graph()
    one = rank_stage(stage, ParallelPlan(), "two-calls")
    assert one.graph().ops == stage.graph().ops
    model = cost_model("h100-sxm")
    assert stage_time(one, model) == stage_time(stage, model)


def test_ulysses_4_shards_tokens_and_heads(block):
    g = ulysses(block, 4)
    local = TOKENS // 4  # 8,190 tokens per rank outside attention
    assert g.op("blocks.0.attn1.to_q").shape == Linear(local, WIDTH, WIDTH)
    assert g.op("blocks.0.ffn.proj").shape == Linear(local, WIDTH, 13824)
    assert g.op("blocks.0.attn1.self").shape == Attention(1, 10, TOKENS, TOKENS, 128, "self")
    assert g.op("blocks.0.attn2.cross").shape == Attention(1, 40, local, 512, 128, "cross")  # text whole
    assert g.op("blocks.0.attn2.to_k").shape == Linear(512, WIDTH, WIDTH)  # text projections replicated
    a2a = comms(g, "all_to_all")
    assert [op.name.rsplit(".", 1)[1] for op in a2a] == ["all_to_all_q", "all_to_all_k", "all_to_all_v",
                                                          "all_to_all_out"]
    # One rank's [1, 8190, 5120] bf16 buffer: 8,190 x 5,120 x 2 = 83,865,600 bytes per all-to-all.
    assert {op.shape.elements * op.dtype_bytes for op in a2a} == {83_865_600}
    assert {op.shape.ranks for op in a2a} == {4}
    # The output (16 x 1 x 2 x 2 = 64 values per token) gathered: 32,760 x 64 x 2 = 4,193,280 bytes.
    (gather,) = comms(g, "all_gather")
    assert gather.shape.elements * 2 == 4_193_280 and gather.name.endswith("sequence.all_gather")
    assert len(comms(g)) == 5
    # The all-to-alls sit between the QKV producers and the attention, and after it.
    pred = set(g.structure.predecessors("blocks.0.attn1.self"))
    assert pred == {f"blocks.0.attn1.self.ulysses.all_to_all_{x}" for x in "qkv"}
    assert list(g.structure.successors("blocks.0.attn1.self")) == ["blocks.0.attn1.self.ulysses.all_to_all_out"]


def test_ring_4_exchanges_kv_blocks_overlapped(block):
    g = ring(block, 4)
    local = TOKENS // 4
    blocks = [g.op(f"blocks.0.attn1.self.ring.{i}") for i in range(4)]
    assert {b.shape for b in blocks} == {Attention(1, 40, local, local, 128, "self")}
    kv = comms(g, "send_recv")
    # K and V blocks, [2, 1, 8190, 5120] bf16: 2 x 8,190 x 5,120 x 2 = 167,731,200 bytes, 3 steps.
    assert len(kv) == 3 and {op.shape.elements * 2 for op in kv} == {167_731_200}
    pairs = overlaps(g)
    assert pairs == tuple((f"blocks.0.attn1.self.ring.kv.{i}", f"blocks.0.attn1.self.ring.{i - 1}")
                          for i in (1, 2, 3))
    import networkx as nx
    for sr, att in pairs:  # overlapped: no path either way
        assert not nx.has_path(g.structure, sr, att) and not nx.has_path(g.structure, att, sr)
    assert sum(b.flops for b in blocks) == block.op("blocks.0.attn1.self").flops // 4


def test_tensor_4_splits_linears_and_all_reduces(block):
    g = tensor_parallel(block, 4)
    assert g.op("blocks.0.attn1.to_q").shape == Linear(TOKENS, WIDTH, WIDTH // 4)  # column
    assert g.op("blocks.0.attn1.to_out").shape == Linear(TOKENS, WIDTH // 4, WIDTH)  # row
    assert g.op("blocks.0.ffn.proj").shape == Linear(TOKENS, WIDTH, 13824 // 4)
    assert g.op("blocks.0.ffn.out").shape == Linear(TOKENS, 13824 // 4, WIDTH)
    assert g.op("blocks.0.attn1.self").shape.heads == 10
    assert g.op("blocks.0.attn2.to_k").shape == Linear(512, WIDTH, WIDTH // 4)
    assert g.op("blocks.0.attn1.norm_q").shape.elements == TOKENS * WIDTH // 4
    reduces = comms(g, "all_reduce")
    # After each attention's output linear and the MLP: [32760, 5120] bf16 = 335,462,400 bytes each.
    assert sorted(op.name for op in reduces) == ["blocks.0.attn1.to_out.tensor.all_reduce",
                                                 "blocks.0.attn2.to_out.tensor.all_reduce",
                                                 "blocks.0.ffn.out.tensor.all_reduce"]
    assert {op.shape.elements * 2 for op in reduces} == {335_462_400}


def test_cfg_halves_calls_or_batch_and_gathers_once(wan14b):
    stage = wan14b.stage("transformer")
    rank = rank_stage(stage, ParallelPlan(cfg=2), "two-calls")
    assert (rank.calls, rank.batch) == (50, 1)
    (gather,) = comms(rank.graph())
    # The pair's outputs [2, 32760, 64] bf16: 2 x 32,760 x 64 x 2 = 8,386,560 bytes.
    assert gather.shape.op == "all_gather" and gather.shape.elements * 2 == 8_386_560
    batched = build("wan2.1-t2v-14b", guidance_mode="batched").stage("transformer")
    assert (rank_stage(batched, ParallelPlan(cfg=2), "batched").batch, batched.batch) == (1, 2)


@pytest.mark.parametrize("degree", [2, 4, 8])
def test_ulysses_divides_compute_by_its_degree(wan14b, degree):
    g = wan14b.stage("transformer").graph()
    rank = ulysses(g, degree)
    compute = sum(op.flops for op in rank.ops if op.category != "Communication")
    assert g.totals.flops / compute == pytest.approx(degree, rel=0.01)  # text and timestep ops replicated
    model = cost_model("h100-sxm")
    device = sum(model.op_time(op) for op in rank.ops if op.category != "Communication")
    assert sum(model.op_time(op) for op in g.ops) / device == pytest.approx(degree, rel=0.1)


def test_describe_reports_the_plan(capsys):
    assert main(["describe", "wan2.1-t2v-1.3b", "--steps", "2", "--device", "h100-sxm", "--json",
                 "--parallel", "transformer:ulysses=4,cfg=2"]) == 0
    p = json.loads(capsys.readouterr().out)["parallel"]
    (s,) = p["stages"]
    assert (s["stage"], s["gpus"], s["calls_per_rank"]) == ("transformer", 8, 2)
    assert 0 <= s["communication_share"] < 1 and s["speedup"] > 1
    assert main(["describe", "wan2.1-t2v-1.3b", "--steps", "2", "--parallel", "transformer:ulysses=5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("valid degrees: 2, 3, 4, 6") and "\n" not in err  # 1.3B: 12 heads
