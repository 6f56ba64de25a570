"""Cost models and the host/device timeline, against hand calculations."""

import numpy as np
import pytest

import workloads
from emulator.builder import GraphBuilder
from emulator.cost import CostModel, Profile, Roofline, stage_time
from emulator.cost.kernels import baseline_attention_kernels, kernel_count, work
from emulator.cost.timeline import GraphCoster, finish_time
from emulator.devices import device
from emulator.errors import UserError
from emulator.ops import Op
from emulator.shapes import Attention, Elementwise, Linear

A100 = device("a100-sxm4-80gb")


def test_catalog_has_the_study_devices_with_units():
    for name in ("a100-sxm4-80gb", "a100-pcie-40gb", "h100-sxm", "h200", "l4", "cpu"):
        d = device(name)
        assert d.hbm_GBps > 0 and d.fp16_tflops > 0 and d.host_us_per_op >= d.host_us_per_kernel > 0
    assert A100.matmul_flops_per_s("fp16") == 312e12 and A100.bytes_per_s == 2039e9
    assert device("cpu").synchronous and not A100.synchronous
    with pytest.raises(UserError, match="a100-sxm4-80gb"):
        device("tpu-v9")


def test_roofline_takes_the_slower_of_compute_and_memory():
    model = Roofline(A100)
    big = Op("mm", Linear(8192, 8192, 8192, bias=False), "fp16")  # compute bound
    assert model.op_time(big) == pytest.approx(2 * 8192**3 / 312e12)
    add = Op("add", Elementwise("add", 10**8, 2), "fp16")  # memory bound: 3 x 1e8 x 2 bytes
    assert model.op_time(add) == pytest.approx(6e8 / 2039e9)


def test_baseline_attention_is_three_kernels_with_the_matrix_in_memory():
    op = Op("a", Attention(2, 8, 4096, 4096, 40), "fp16")
    scores, softmax, values = baseline_attention_kernels(op)
    s_bytes = 2 * 8 * 4096 * 4096 * 2
    assert scores.output_bytes == s_bytes and softmax.bytes == 2 * s_bytes
    assert kernel_count(op, "baseline") == 3 and kernel_count(op, "flash") == 1
    causal = Op("c", Attention(1, 1, 64, 64, 8, "causal", causal=True), "fp16")
    assert kernel_count(causal, "baseline") == 4  # the mask add
    flash_bytes, base_bytes = work(op, "flash")[1], work(op, "baseline")[1]
    assert base_bytes - flash_bytes > 3 * s_bytes


def test_timeline_by_hand():
    d = np.array([1.0, 1.0, 1.0])
    # Device-bound: host dispatches at 0.1, 0.2, 0.3; kernels run back to back from 0.1.
    assert finish_time(d, np.array([0.1, 0.2, 0.3]), False) == pytest.approx(3.1)
    # Host-bound: dispatch at 5, 10, 15; each kernel starts when dispatched.
    assert finish_time(d, np.array([5.0, 10.0, 15.0]), False) == pytest.approx(16.0)
    # Mixed: a slow dispatch early, then the device catches up to the host.
    assert finish_time(np.array([0.5, 3.0, 0.5]), np.array([2.0, 2.1, 2.2]), False) == pytest.approx(6.0)
    # A CPU runs kernels on the dispatching thread: sum of both.
    assert finish_time(d, np.array([0.1, 0.2, 0.3]), True) == pytest.approx(3.3)


class FixedCost:
    """Every op takes `seconds`; the host needs `host` per kernel."""

    name = "fixed"
    calibrated = True

    def __init__(self, seconds, host, attention="flash"):
        self.seconds, self.host_s_per_op, self.host_s_per_kernel, self.attention = seconds, host, host, attention
        self.device = A100

    def op_time(self, op):
        return self.seconds

    def implementation(self, a):
        return self.attention

    def time_source(self, op):
        return "measured"

    def covers(self, op):
        return True


def chain(n):
    b = GraphBuilder()
    x = b.input(4)
    for i in range(n):
        x = b.elementwise(f"op{i}", "silu", x)
    return b.build()


def test_small_ops_wait_for_the_host_and_big_ops_do_not():
    g = chain(10)
    host_bound = GraphCoster(g, FixedCost(1e-6, 5e-6), False).call()
    assert host_bound.seconds == pytest.approx(10 * 5e-6 + 1e-6)
    assert host_bound.host_idle_s == pytest.approx(host_bound.seconds - 10e-6)
    device_bound = GraphCoster(g, FixedCost(1e-3, 5e-6), False).call()
    assert device_bound.seconds == pytest.approx(5e-6 + 10e-3)
    assert device_bound.by_category_s == {"Elementwise": pytest.approx(10e-3)}


def test_every_cost_model_is_a_cost_model_and_only_a_calibrated_one_counts_fallbacks():
    empty = Profile({"device": "a100-sxm4-80gb", "dtype": "fp16", "kinds": {},
                     "host": {"s_per_op": 6e-5, "s_per_kernel": 1e-5}})  # measured nothing: covers no op
    roofline = Roofline(A100)
    assert all(isinstance(m, CostModel) for m in (empty, roofline, FixedCost(1e-6, 1e-6)))
    decode = workloads.build("llama2-7b", prompt_tokens=16, output_tokens=3).stage("decode")
    op = decode.graph().ops[0]
    assert not roofline.covers(op) and not empty.covers(op)
    assert stage_time(decode, roofline)[1].fallback_ops == 0  # a roofline has no domain to fall out of
    assert stage_time(decode, empty)[1].fallback_ops == len(decode.graph().ops) * decode.calls


def test_decode_request_time_sums_every_call():
    p = workloads.build("llama2-7b", prompt_tokens=16, output_tokens=6)
    model = Roofline(A100)
    decode = p.stage("decode")
    _, request = stage_time(decode, model)
    brute = sum(GraphCoster(decode.graph(call=c), model, False).call().seconds for c in range(decode.calls))
    assert request.seconds == pytest.approx(brute)


@pytest.mark.parametrize("name", ["stable-diffusion", "imagen", "make-a-video"])
def test_flash_is_never_slower_than_baseline_under_the_roofline(name):
    p = workloads.build(name)
    for stage in p.stages:
        flash = stage_time(stage, Roofline(A100, "flash"))[1].seconds
        base = stage_time(stage, Roofline(A100, "baseline"))[1].seconds
        assert flash <= base * (1 + 1e-12), stage.name


def test_case4_every_catalog_device_finds_its_shipped_profile_or_says_it_has_none():
    from emulator.cost.costing import cost_model, cost_source
    from emulator.cost.profile import load_profile, shipped_profile
    from emulator.devices import catalog

    for name, dev in catalog().items():
        path = shipped_profile(name)
        assert (path is None) == (dev.profile is None), name  # a named file that is missing fails here
        if path is not None:
            assert load_profile(path)["device"] == name
    assert cost_model("cpu").name == "cpu-fp32"  # the catalog's `cpu`, costed by the shipped cpu-fp32.json
    assert shipped_profile("cpu-fp32") == shipped_profile("cpu")  # a file stem still finds its file
    assert [cost_source(n)["source"] for n in ("cpu", "h100-sxm", "a100-sxm4-80gb", "h200", "l4", "a100-pcie-40gb")] \
        == ["measured", "measured", "derived", "measured", "derived", "derived"]  # h200: aiconfigurator's tables;
    # l4 and a100-pcie-40gb: the measured H100 at its attained efficiency (calibration/transfer.py)


def test_case4_a_cost_source_carries_the_profiles_provenance():
    from emulator.cost.costing import cost_source, source_text

    measured = cost_source("h100-sxm")
    assert measured["profile"] == "calibration/profiles/h100-sxm.json" and measured["date"].startswith("20")
    assert measured["device_fingerprint"]["gpu"] == "NVIDIA H100 80GB HBM3"
    assert source_text(measured).startswith(f"measured profile calibration/profiles/h100-sxm.json ({measured['date']}; ")
    assert source_text(cost_source("l4", roofline=True)) == "datasheet roofline, uncalibrated (requested)"
    assert cost_source("h100-sxm", roofline=True)["source"] == "roofline"
    derived = cost_source("calibration/profiles/h100-sxm-derived.json")
    assert derived["source"] == "derived" and derived["device"] == "h100-sxm"
