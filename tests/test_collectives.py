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


# -- cost: the device's measured NCCL table, alpha-beta beyond it ----------------------------------------------

import json  # noqa: E402
import math  # noqa: E402
from pathlib import Path  # noqa: E402

from emulator.cost import cost_model  # noqa: E402
from emulator.cost.collectives import collective_time, link_fraction, measured, table_path  # noqa: E402
from emulator.cost.timeline import GraphCoster  # noqa: E402
from emulator.devices import device  # noqa: E402

H100 = device("h100-sxm")


def fp16(op: str, size_bytes: int, ranks: int, cross_node: bool = False) -> Op:
    return Op(op, Collective(op, size_bytes // 2, ranks, cross_node), "fp16")


def table_rows(name: str, op: str, ranks: int) -> list:
    return json.loads(table_path(name).read_text())["ops"][op][str(ranks)]


@pytest.mark.parametrize("op, ranks", [("all_reduce", 8), ("all_gather", 2), ("all_to_all", 4),
                                       ("reduce_scatter", 8)])
def test_measured_points_exact(op, ranks):
    rows = table_rows("h100-sxm", op, ranks)
    assert len(rows) == 21 and rows[0][0] == 512 and rows[-1][0] == 2**29  # 512 B .. 512 MiB
    for model in (cost_model("h100-sxm"), cost_model("h100-sxm", roofline=True)):
        for size, seconds in rows:
            o = fp16(op, size, ranks)
            assert model.op_time(o) == seconds
            assert model.time_source(o) == "measured"
    assert cost_model("h100-sxm").covers(fp16(op, rows[3][0], ranks))


def test_interpolation_between_and_monotone():
    rows = table_rows("h100-sxm", "all_reduce", 8)
    (s0, t0), (s1, t1) = rows[10], rows[11]
    mid = fp16("all_reduce", (s0 + s1) // 2 // 16 * 16, 8)
    t, source = collective_time(mid, H100)
    assert min(t0, t1) < t < max(t0, t1) and source == "measured"
    # Monotone where the measured latencies are (from 64 KiB; below, the table's own noise: 16 KiB takes
    # less than 8 KiB on 8 H100s), through the table's end and beyond it, at sizes between its rows too.
    table = [t for _, t in rows]
    assert any(a > b for a, b in zip(table, table[1:]))
    sizes = [int(2 ** (k / 4)) // 16 * 16 for k in range(4 * 16, 4 * 31)]  # 64 KiB .. 2 GiB, quarter octaves
    times = [collective_time(fp16("all_reduce", s, 8), H100)[0] for s in sizes]
    assert all(a < b for a, b in zip(times, times[1:]))


def test_beyond_the_table_continues_from_its_end():
    series = measured("h100-sxm")["all_reduce"][8]
    end_s, end_t = series.sizes_bytes[-1], series.seconds[-1]
    beta = link_fraction("all_reduce", 8) * (end_s - series.sizes_bytes[0]) / (end_t - series.seconds[0])
    t, source = collective_time(fp16("all_reduce", 2 * end_s, 8), H100)
    assert source == "curve" and not cost_model("h100-sxm").covers(fp16("all_reduce", 2 * end_s, 8))
    assert math.isclose(t, end_t + link_fraction("all_reduce", 8) * end_s / beta)
    assert collective_time(fp16("all_reduce", 64, 8), H100) == (series.seconds[0], "curve")  # latency floor


def test_other_counts_nodes_and_datasheet_devices():
    size = 64 * 2**20
    t6, s6 = collective_time(fp16("all_reduce", size // 24 * 24, 6), H100)
    assert s6 == "curve" and t6 > 0
    t16, s16 = collective_time(fp16("all_reduce", size, 16), H100)  # two DGX H100: 50 GB/s NICs
    assert s16 == "datasheet" and t16 > link_fraction("all_reduce", 16) * size / 50e9
    cross = collective_time(fp16("all_reduce", size, 8, cross_node=True), H100)[0]
    assert cross > collective_time(fp16("all_reduce", size, 8), H100)[0]
    t_l4, s_l4 = collective_time(fp16("all_reduce", size, 2), device("l4"))  # no table: PCIe Gen4, 32 GB/s each way
    assert s_l4 == "datasheet" and t_l4 > size / 32e9
    with pytest.raises(Exception, match="network"):
        collective_time(fp16("all_reduce", size, 16), device("l4"))


def test_shipped_tables_have_provenance():
    for name in ("a100-sxm4-80gb", "h100-sxm", "h200", "b200", "b300", "gb200", "gb300", "l40s",
                 "rtx-pro-6000-server"):
        data = json.loads(table_path(name).read_text())
        assert data["device"] == name and data["provenance"]["versions"]["nccl"]
        assert any("NOTICE" in c for c in data["provenance"]["citations"])
        assert set(data["ops"]) == {"all_gather", "all_reduce", "reduce_scatter", "all_to_all"}


def test_timeline_communication_category():
    b = GraphBuilder("fp16")
    x = b.input(8, 1024, 4096)
    y = b.linear("proj", x, 4096)
    b.collective("tp.all_reduce", "all_reduce", y, ranks=8)
    graph = b.build()
    for spec in ("h100-sxm", "l4"):
        model = cost_model(spec)
        call = GraphCoster(graph, model, synchronous=False).call()
        assert set(call.by_category_s) == {"Linear", "Communication"}
        assert call.by_category_s["Communication"] == model.op_time(graph.ops[1])


AIC_DATA = Path("/tmp/aic/whl/aiconfigurator_core/systems/data")


@pytest.mark.skipif(not AIC_DATA.is_dir(), reason="aiconfigurator-core's unpacked wheel is not here")
def test_import_reproduces_the_shipped_table(tmp_path):
    pytest.importorskip("pyarrow")  # the `public` extra: only importing needs it
    from calibration.public_collectives import import_and_write

    (path,) = import_and_write("h100_sxm", AIC_DATA, tmp_path)
    assert path.read_text() == table_path("h100-sxm").read_text()
