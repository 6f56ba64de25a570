"""Kinds the public tables lack, scaled from the measured H100 (calibration/scaled_kinds.py), and what they buy.

The rule's answers are hand-computed from its statement; the ordering test asks
of every device with a shipped profile what a buyer takes for granted: a GPU
with at least another's compute and bandwidth is not slower on a device-bound
request (SD v1.5, one graph launch per step so the host does not hide it).
"""

import pytest

from calibration.scaled_kinds import ratio, scaled_kinds
from emulator.cost.predictor import Curve, curve_seconds
from emulator.devices import catalog, device
from emulator.shapes import Conv, Norm


def test_memory_bound_kinds_scale_by_bandwidth_and_gemm_like_ones_by_the_linear_curves():
    h100, h200 = device("h100-sxm"), device("h200")
    fast, slow = Curve(2e15, 4e12, 5e-6), Curve(1e15, 2e12, 5e-6)
    norm = Norm("group", 2 * 320 * 4096, 320, 32, 2)
    # 3350 GB/s against 4800 GB/s (the catalog's datasheet figures): the H200 takes 3350/4800 of the time.
    assert ratio("group_norm", norm, "bf16", fast, slow, h200, h100) == pytest.approx(
        h100.hbm_GBps / h200.hbm_GBps)
    conv = Conv(2, 320, 320, (64, 64), (3, 3))
    expected = curve_seconds("conv2d", "bf16", fast, conv) / curve_seconds("conv2d", "bf16", slow, conv)
    assert ratio("conv2d", conv, "bf16", fast, slow, h200, h100) == pytest.approx(expected)
    assert 0.5 < expected < 0.75  # twice the rates: half the roofline time, plus the same launch overhead


def test_scaled_kinds_keep_the_h100_shapes_and_mark_their_source():
    from emulator.cost.profile import load_profile, shipped_profile

    measured = load_profile(shipped_profile("h100-sxm"))
    same = Curve(1e15, 3e12, 5e-6)
    entries = scaled_kinds(measured, same, same, device("h100-sxm"), device("h100-sxm"), "bf16", {"linear"})
    assert "linear" not in entries and "conv2d" in entries
    conv = entries["conv2d"]
    assert conv["source"].startswith("transferred: measured h100-sxm")
    # the H100 onto itself: every time as measured, less the launch its event timing carries (the profile
    # declares it: kernel time excludes the launch)
    launch_s = measured["kinds"]["conv2d"]["launch_in_times_s"]
    assert launch_s > 0
    assert [p["seconds"] for p in conv["points"]] == pytest.approx(
        [max(p["seconds"] - launch_s, 0.1 * p["seconds"]) for p in measured["kinds"]["conv2d"]["points"]], rel=1e-12)


def test_no_gpu_is_slower_than_one_with_less_compute_and_bandwidth_on_a_device_bound_request():
    import workloads
    from emulator.cost import cost_model, stage_time
    from emulator.cost.runtime import RUNTIMES

    pipeline = workloads.build("stable-diffusion", steps=4)
    profiled = [d for name, d in catalog().items() if d.kind == "gpu" and d.profile]
    seconds = {}
    for d in profiled:
        model = cost_model(d.name)
        seconds[d.name] = sum(stage_time(s, model, runtime=RUNTIMES["cuda-graphs"])[1].seconds
                              for s in pipeline.stages)
    # "More" is at least as much of both and 10% more of one: two GPUs with one datasheet (B200, B300 in
    # bf16) differ by what their measured kernels show, which is the point of measuring them.
    for a in profiled:
        for b in profiled:
            at_least = a.bf16_tflops >= b.bf16_tflops and a.hbm_GBps >= b.hbm_GBps
            if at_least and (a.bf16_tflops >= 1.1 * b.bf16_tflops or a.hbm_GBps >= 1.1 * b.hbm_GBps):
                assert seconds[a.name] <= seconds[b.name] * 1.05, (a.name, b.name, seconds)


def test_a_device_nobody_measured_keeps_the_h100s_attained_efficiency():
    from calibration.transfer import efficiency_ratio
    from emulator.shapes import Linear

    h100, l4 = device("h100-sxm"), device("l4")
    # An 8192^3 GEMM without bias, by hand: 2 * 8192^3 FLOPs at the H100's 989 TFLOPS, three 8192^2 fp16
    # matrices at 3350 GB/s; w its compute share; the L4's 121 TFLOPS and 300 GB/s.
    compute, memory = 2 * 8192**3 / 989e12, 3 * 2 * 8192**2 / 3350e9
    w = compute / (compute + memory)  # 0.90: mostly compute-bound
    expected = w * 989 / 121 + (1 - w) * 3350 / 300
    assert efficiency_ratio("linear", Linear(8192, 8192, 8192, bias=False), "fp16", l4, h100) == pytest.approx(
        expected)
    # A copy does no arithmetic (w = 0): the bandwidth ratio, 3350 / 300 GB/s.
    from emulator.shapes import Elementwise

    copy = Elementwise("copy", 2**24, 1)
    assert efficiency_ratio("elementwise", copy, "fp16", l4, h100) == pytest.approx(3350 / 300)
