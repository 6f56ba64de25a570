"""Collectives: the IR shape's element counts by the ring formulas, and its place in graphs."""

from __future__ import annotations

import pytest

from emulator.builder import GraphBuilder
from emulator.ops import Op
from emulator.shapes import Collective

MiB = 2**20


@pytest.mark.parametrize("op, link_elements, input_elements, output_elements", [
    # 8 ranks, a message of 8 MiB elements (16 MiB in fp16)
    ("all_reduce", 2 * 7 * MiB, 8 * MiB, 8 * MiB),  # 2 (P-1)/P x 8 MiB
    ("all_gather", 7 * MiB, MiB, 8 * MiB),  # (P-1)/P x the gathered buffer; each rank brings 1/P
    ("reduce_scatter", 7 * MiB, 8 * MiB, MiB),  # (P-1)/P x the input; each rank keeps 1/P
    ("all_to_all", 7 * MiB, 8 * MiB, 8 * MiB),  # keeps its own 1/P, sends the rest
])
def test_ring_elements(op, link_elements, input_elements, output_elements):
    c = Collective(op, 8 * MiB, 8)
    assert (c.link_elements, c.input_elements, c.output_elements) == (link_elements, input_elements, output_elements)
    assert c.flops == c.mac_flops == c.weight_elements == 0
    assert (c.kind, c.category) == ("collective", "Communication")
    o = Op("c", c, "fp16")
    assert o.dtype_bytes * c.link_elements == 2 * link_elements
    assert o.bytes == 2 * (input_elements + output_elements)


def test_send_recv_and_two_ranks():
    assert Collective("send_recv", 1000, 2).link_elements == 1000
    assert Collective("all_reduce", 1000, 2).link_elements == 1000  # 2 x 1/2
    assert Collective("all_reduce", 1001, 4).link_elements == 6 * 1001 // 4  # rounded down


@pytest.mark.parametrize("args", [("broadcast", 8, 2), ("all_reduce", 8, 1), ("send_recv", 8, 4),
                                  ("all_gather", 9, 2), ("all_reduce", 0, 2)])
def test_invalid(args):
    with pytest.raises(ValueError):
        Collective(*args)


def test_builder_helper():
    b = GraphBuilder("bf16")
    x = b.input(4, 128, 1024)
    g = b.collective("tp.gather", "all_gather", x, ranks=4, dim=2)
    r = b.collective("tp.scatter", "reduce_scatter", g, ranks=4, dim=1)
    a = b.collective("tp.reduce", "all_reduce", r, ranks=4, cross_node=True)
    assert (g.shape, r.shape, a.shape) == ((4, 128, 4096), (4, 32, 4096), (4, 32, 4096))
    graph = b.build()
    gather, scatter, reduce = graph.ops
    assert gather.shape == Collective("all_gather", 4 * 128 * 4096, 4)
    assert scatter.shape == Collective("reduce_scatter", 4 * 128 * 4096, 4)
    assert reduce.shape == Collective("all_reduce", 4 * 32 * 4096, 4, cross_node=True)
    assert set(graph.by_category) == {"Communication"}

