"""OpGraph and GraphBuilder: dependency edges, execution order, queries, liveness."""

import pytest

from emulator.builder import GraphBuilder
from emulator.graph import OpGraph
from emulator.liveness import peak_live_bytes
from emulator.ops import Op
from emulator.shapes import Elementwise


def residual_graph():
    """x -> a -> b -> add(a, b): a stays alive across b for the residual."""
    b = GraphBuilder("fp32")
    x = b.input(1, 100)
    a = b.elementwise("a", "silu", x)  # 400 bytes out
    h = b.linear("b", a, 200, bias=False)  # 800 bytes out
    b.add_("add", a, h.view(1, 200).narrow(1, 100))
    return b.build()


def test_builder_records_real_dependencies():
    g = residual_graph()
    assert [op.name for op in g] == ["a", "b", "add"]
    assert set(g.structure.edges) == {("a", "b"), ("a", "add"), ("b", "add")}


def test_scopes_name_ops_and_duplicates_are_refused():
    b = GraphBuilder()
    with b.scope("unet"), b.scope("down.0"):
        t = b.elementwise("act", "silu", b.input(4))
    assert t.node == "unet.down.0.act"
    b.elementwise("unet.down.0.act", "silu", b.input(4))
    with pytest.raises(ValueError, match="duplicate"):
        b.build()


def test_execution_order_must_be_topological():
    import networkx as nx

    ops = [Op("a", Elementwise("add", 4)), Op("b", Elementwise("add", 4))]
    structure = nx.DiGraph([("b", "a")])
    with pytest.raises(ValueError, match="not topological"):
        OpGraph(ops, structure)


def test_peak_liveness_by_hand():
    # a (400 B) is read by add, so it lives while b (800 B) is produced: 1200 B;
    # add's output (400 B) appears while a and b are still being read: 1600 B.
    assert residual_graph().peak_activation_bytes() == 400 + 800 + 400


def test_peak_live_bytes_frees_after_last_use():
    # Chain of three ops, each read only by the next: at most two tensors live.
    assert peak_live_bytes([10, 20, 30], [1, 2, 2], [0, 0, 0]) == 50
    # A transient workspace adds to the op that holds it.
    assert peak_live_bytes([10, 20, 30], [1, 2, 2], [0, 100, 0]) == 130
    with pytest.raises(ValueError):
        peak_live_bytes([1, 1], [0, 0], [0, 0])  # op 1 "last used" before it runs


def test_baseline_attention_holds_the_similarity_matrix():
    b = GraphBuilder("fp16")
    q = b.linear("q", b.input(1, 64, 32), 32)
    b.attention("attn", q, q, q, heads=2, variant="self")
    g = b.build()
    sim = 1 * 2 * 64 * 64 * 2
    assert g.peak_activation_bytes("baseline") - g.peak_activation_bytes("flash") == sim
    with pytest.raises(ValueError):
        g.peak_activation_bytes("paged")


def test_totals_by_category_add_up():
    g = residual_graph()
    cats = g.by_category
    assert set(cats) == {"Elementwise", "Linear"}
    assert sum(t.flops for t in cats.values()) == g.totals.flops
    assert sum(t.ops for t in cats.values()) == len(g)


def test_kv_advanced_graph_shares_structure_and_grows_cache():
    b = GraphBuilder()
    q = b.linear("q", b.input(1, 1, 64), 64)
    from emulator.builder import Tensor

    cache = Tensor((1, 10, 64), q.node)
    b.attention("attn", q, cache, cache, heads=1, variant="causal", causal=True, kv_cache=True)
    g = b.build()
    later = g.with_kv_advanced(5)
    assert later.structure is g.structure
    assert later.op("attn").shape.kv_len == 15
    assert later.kv_cache_bytes == 2 * 15 * 64 * 2
    assert g.with_kv_advanced(0) is g
