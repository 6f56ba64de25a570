"""Calibration on the CPU with tiny shapes: timers, kernel runners, a resumable run, the report."""

import json
import math
import statistics

import pytest

torch = pytest.importorskip("torch")

from calibration import run as run_module
from calibration.cpu.drift import DriftReference
from calibration.grid import spec_key
from calibration.measure import CHEAP_KERNEL_S
from calibration.pooling import pool
from calibration.write import read_passes
from emulator.cost.predictor import fit_predictor
from emulator.devices import device
from calibration.kernels import make_runner
from calibration.report import holdout_errors
from calibration.timers import CpuClock, measure
from emulator.cost import Profile, load_profile
from emulator.shapes import (
    Attention,
    Conv,
    Elementwise,
    Embedding,
    Linear,
    Matmul,
    Norm,
    Resample,
    Softmax,
)

TINY = [
    ("linear", Linear(4, 8, 16)),
    ("matmul", Matmul(2, 4, 8, 4)),
    ("conv2d", Conv(1, 4, 8, (8, 8), (3, 3), stride=2)),
    ("conv1d", Conv(16, 4, 4, (5,), (3,))),
    ("attention_flash", Attention(1, 2, 16, 16, 8, "causal", causal=True)),
    ("attention_baseline", Attention(1, 2, 16, 16, 8, "causal", causal=True)),
    ("attention_baseline", Attention(2, 2, 1, 9, 8, "causal", causal=True, kv_cache=True)),
    ("group_norm", Norm("group", 2 * 8 * 16, 8, 4, batch=2)),
    ("layer_norm", Norm("layer", 6 * 8, 8)),
    ("rms_norm", Norm("rms", 6 * 8, 8)),
    ("softmax", Softmax(4, 7)),
    ("elementwise", Elementwise("geglu", 30, 2)),
    ("elementwise", Elementwise("copy", 12)),
    ("elementwise", Elementwise("memcpy", 12)),
    ("elementwise", Elementwise("copy", 12, inputs=2)),  # a torch.cat of two strided tensors
    ("elementwise", Elementwise("add", 12, inputs=1)),  # a broadcast add
    ("resample", Resample("up", 1, 2, (4, 4))),
    ("embedding", Embedding(5, 11, 3)),
]


@pytest.mark.parametrize("kind, shape", TINY, ids=[f"{k}-{i}" for i, (k, _) in enumerate(TINY)])
def test_every_kind_runs_with_the_emulator_output_size(kind, shape):
    runner = make_runner(kind, shape, "fp32", "cpu", buffers=2)
    out = runner.run(0)
    assert out.numel() == shape.output_elements
    assert torch.isfinite(out).all()
    assert runner.run(1) is not None  # the second buffer set


@pytest.mark.parametrize("shape", [Attention(1, 2, 16, 16, 8, "causal", causal=True),
                                   Attention(2, 3, 16, 40, 8, "cross")])
def test_both_attention_runners_compute_attention(shape):
    # Each runner's output on its own inputs against torch's SDPA (math) on the same inputs.
    causal = shape.causal
    base = make_runner("attention_baseline", shape, "fp32", "cpu", buffers=1)
    q, kt, v = base.sets[0]  # [B*H, q, d], [B*H, d, kv], [B*H, kv, d]
    reference = torch.nn.functional.scaled_dot_product_attention(q, kt.transpose(1, 2), v, is_causal=causal)
    assert torch.allclose(base.run(0), reference, atol=1e-5)
    flash = make_runner("attention_flash", shape, "fp32", "cpu", buffers=1)
    q, k, v = flash.sets[0]  # [B, H, L, d]
    scores = q @ k.transpose(-1, -2) / shape.head_dim**0.5
    if causal:
        scores = scores + torch.full(scores.shape[-2:], float("-inf")).triu(1)
    assert torch.allclose(flash.run(0), torch.softmax(scores, -1) @ v, atol=1e-5)


class FakeClock:
    """Samples of a kernel taking 1 ms, with every fourth sample 10x slower (interference)."""

    def __init__(self):
        self.n = 0

    def samples(self, run, first, n):
        out = []
        for _ in range(n):
            self.n += 1
            out.append(0.010 if self.n % 4 == 0 else 0.001 * (1 + 0.001 * (self.n % 3)))
        return out


def test_timer_rejects_slow_outliers_and_stops_when_stable():
    t = measure(lambda i: None, FakeClock(), warmup=2, min_repeats=7)
    assert t.median_s == pytest.approx(0.001, rel=0.01)
    assert t.rejected > 0 and t.repeats >= 7
    assert t.min_s <= t.median_s


def test_timer_on_a_real_cpu_kernel():
    runner = make_runner("linear", Linear(64, 64, 64), "fp32", "cpu", buffers=4)
    t = measure(runner.run, CpuClock(), min_repeats=5, budget_s=0.5)
    assert 0 < t.min_s <= t.median_s
    assert t.repeats >= 5 and t.spread >= 0


class Interrupted(Exception):
    """Stands for the user pressing Ctrl-C in the middle of a run."""


def test_run_resumes_and_writes_a_loadable_profile(tmp_path, monkeypatch):
    from calibration import timers

    tiny = [spec for spec in TINY if spec[0] in ("linear", "elementwise", "softmax")]
    more = [("linear", Linear(m, 8, 8)) for m in (1, 2, 3, 5, 7)]
    monkeypatch.setattr(run_module, "grid", lambda quick: tiny + more)
    original = timers.measure
    measured = []
    interrupt_after = [2]

    def counting(run, clock, **kw):
        if len(measured) == interrupt_after[0]:
            raise Interrupted
        measured.append(1)
        return original(run, clock, **{**kw, "budget_s": 0.05})

    monkeypatch.setattr(timers, "measure", counting)
    out = tmp_path / "p.json"
    with pytest.raises(Interrupted):
        run_module.run("cpu", "fp32", True, [], out, passes=2)
    partial = out.with_name(out.name + ".partial.jsonl")
    assert len(partial.read_text().splitlines()) == 1 + 2  # the host line and two kernels
    interrupt_after[0] = -1
    run_module.run("cpu", "fp32", True, [], out, passes=2)
    assert len(measured) == 2 * (len(tiny) + len(more))  # nothing measured twice in the same pass
    assert not partial.exists()
    profile, passes = load_profile(out), read_passes(out)
    assert profile["provenance"]["source"] == "measured" and profile["host"]["included_in_kernel_times"]
    assert profile["provenance"]["versions"]["torch"] and profile["provenance"]["device_fingerprint"]["threads"]
    points = [p for e in profile["kinds"].values() for p in e["points"]]
    raw = [p for kind in profile["kinds"] for p in passes[kind]]
    assert len(points) == len(raw) == len(tiny) + len(more) and all(len(p["pass_medians_s"]) == 2 for p in raw)
    # Two passes a kernel: the entry is pooled with its neighbours' plane (calibration/pooling.py), the
    # plane and weights recomputed here from the raw passes kept beside the profile.
    linears = passes["linear"]
    i = next(i for i, p in enumerate(linears) if p["shape"]["m"] == 5)
    shapes = [Linear(**p["shape"]) for p in linears]
    medians = [statistics.median(p["pass_medians_s"]) for p in linears]
    predictor = fit_predictor("linear", "fp32", shapes, medians, device("cpu"))
    _, pooling = pool(predictor.residual, [p["pass_medians_s"] for p in linears], predictor.left_out_corrections())
    w = pooling.weights[i]
    neighbours = predictor.curve_time(Linear(5, 8, 8)) * math.exp(pooling.left_out[i])
    assert Profile(profile).predictors["linear"].predict(Linear(5, 8, 8)) == pytest.approx(
        medians[i] ** w * neighbours ** (1 - w))


def test_every_elementwise_op_has_a_torch_runner():
    from calibration.kernels import ELEMENTWISE
    from emulator.shapes import ELEMENTWISE_FLOPS_PER_ELEMENT

    assert set(ELEMENTWISE) == set(ELEMENTWISE_FLOPS_PER_ELEMENT)
    for op in ELEMENTWISE:
        make_runner("elementwise", Elementwise(op, 64, 2 if op in ("add", "mul", "geglu", "swiglu") else 1),
                    "fp32", "cpu", 1).run(0)


def test_a_linears_samples_are_rescaled_by_both_references_and_other_kernels_by_compute_alone():
    import time

    from calibration.cpu.drift import DriftCorrectedCpuClock

    class SlowMemory:
        """Compute at the baseline's speed, memory at half of it, counting the stream readings."""

        streams = 0

        def compute_warm(self) -> float:
            return 1e-3

        def weight_stream(self) -> float:
            self.streams += 1
            return 8e-3

    def run(i):
        time.sleep(0.002)

    reference = SlowMemory()
    clock = DriftCorrectedCpuClock(reference, baseline_s=1e-3, stream_baseline_s=4e-3)
    clock.compute_share, clock.stream_share = 0.3, 0.7  # a memory-bound linear
    linear = clock.samples(run, 1, 5)
    assert reference.streams == 2 and clock.stream_ratios == [2.0]
    # 2 ms each, over (1)^0.3 * 2^0.7 = 1.625 (hand-computed): 1.23 ms at the profile's speeds.
    assert statistics.median(linear) == pytest.approx(0.002 / 2**0.7, rel=0.25)
    clock.stream_share = 0.0  # any other kind: the stream reference is not read
    other = clock.samples(run, 1, 5)
    assert reference.streams == 2 and statistics.median(other) == pytest.approx(0.002, rel=0.25)
    old = DriftCorrectedCpuClock(reference, baseline_s=1e-3)  # a profile from before the stream reference
    old.stream_share = 0.7
    old.samples(run, 1, 5)
    assert reference.streams == 2
    # Not rescaling (sentinel kernels, calibration/sentinels.py): both references read, the samples as measured.
    raw = DriftCorrectedCpuClock(reference, baseline_s=1e-3, stream_baseline_s=4e-3, rescale=False)
    raw.compute_share, raw.stream_share = 0.3, 0.7
    assert statistics.median(raw.samples(run, 1, 5)) == pytest.approx(0.002, rel=0.25)
    assert reference.streams == 4 and raw.stream_ratios == [2.0]


def test_a_profile_is_stated_at_the_references_median_speeds_over_the_run():
    from calibration.cpu.drift import at_speeds, typical_speeds

    # Three entries under two clocks (a run resumed under a new one): the first clock's baseline 1.0 ms,
    # the second's 2.0 ms. Absolute compute readings: 1.2, 0.8 and 1.0 ms; median 1.0 ms.
    entries = [
        {"compute_drift": 1.2, "compute_reference_s": 1e-3, "compute_share": 1.0, "median_s": 1.0},
        {"compute_drift": 0.8, "compute_reference_s": 1e-3, "compute_share": 0.5, "median_s": 1.0,
         "stream_drift": 2.0, "stream_reference_s": 4e-3, "stream_share": 0.5},
        {"compute_drift": 0.5, "compute_reference_s": 2e-3, "compute_share": 1.0, "median_s": 1.0},
    ]
    speeds = typical_speeds(entries)
    assert speeds == pytest.approx({"compute_s": 1e-3, "weight_stream_s": 8e-3})
    assert at_speeds(entries[0], speeds) == pytest.approx(1.0)  # already at 1.0 ms
    assert at_speeds(entries[1], speeds) == pytest.approx(2.0**0.5)  # memory: 8 ms against 4, to the 0.5
    # A time taken to a 2.0 ms compute speed is half of what it is at 1.0 ms (w = 1).
    assert at_speeds(entries[2], speeds) == pytest.approx(0.5)
    assert at_speeds({"median_s": 1.0}, speeds) == 1.0  # a GPU entry: no reference
    assert typical_speeds([{"median_s": 1.0}]) == {}


def test_pass_medians_settle_when_the_two_nearest_their_median_agree():
    from calibration.measure import settled

    assert settled([1.0, 1.05])
    assert not settled([1.0, 1.2])
    assert settled([1.0, 3.0, 1.02])  # one outlier pass is outvoted
    assert not settled([1.0])


def test_kernels_whose_passes_disagree_are_measured_again_until_they_settle(tmp_path, monkeypatch):
    from calibration import kernels, timers

    noisy, steady, cheap = Linear(3, 8, 8), Linear(5, 8, 8), Linear(7, 8, 8)
    monkeypatch.setattr(run_module, "grid", lambda quick: [("linear", noisy), ("linear", steady), ("linear", cheap)])
    current, calls = [], {noisy: 0, steady: 0, cheap: 0}
    original_runner = kernels.make_runner

    def recording_runner(kind, shape, *args):
        current[:] = [shape]
        return original_runner(kind, shape, *args)

    def fake_measure(run, clock, **kw):
        # The noisy kernel's second measurement is 3x slow, as if a neighbour's burst covered it. The
        # cheap one runs under CHEAP_KERNEL_S.
        clock.samples(run, 0, 1)  # the clock's drift bookkeeping, as a real measurement does
        shape = current[0]
        calls[shape] += 1
        slow = shape == noisy and calls[shape] == 2
        median = 1e-3 if shape == cheap else 3 * CHEAP_KERNEL_S * (3 if slow else 1)
        return timers.Timing(median_s=median, min_s=median, spread=0.0, repeats=5, rejected=0)

    class SteadyMachine(DriftReference):
        """No drift: the corrected medians are the fake ones."""

        def compute_warm(self) -> float:
            return 1e-3

        def weight_stream(self, runs: int = 2) -> float:
            return 4e-3

    monkeypatch.setattr(kernels, "make_runner", recording_runner)
    monkeypatch.setattr(timers, "measure", fake_measure)
    monkeypatch.setattr("calibration.cpu.setup.DriftReference", SteadyMachine)
    out = tmp_path / "p.json"
    run_module.run("cpu", "fp32", True, [], out, passes=2, max_passes=5)
    # One extra pass settles the noisy kernel; the steady one is not measured again; the cheap one
    # is measured in every pass.
    assert calls == {noisy: 3, steady: 2, cheap: 5}
    assert "--max-passes 5" in load_profile(out)["provenance"]["method"]
    point = next(p for p in read_passes(out)["linear"] if p["shape"]["m"] == 3)
    assert len(point["pass_medians_s"]) == 3
    # The steady machine's references read their baselines (a linear this small is all memory: v near 1).
    assert point["compute_drifts"] == [1.0, 1.0, 1.0] and point["stream_drifts"] == [1.0, 1.0, 1.0]
    # the median drops the slow pass
    assert statistics.median(point["pass_medians_s"]) == pytest.approx(3 * CHEAP_KERNEL_S)


def test_report_holds_out_a_fifth_per_kind(tmp_path):
    from tests.test_predictor import profile_dict

    errors = holdout_errors(profile_dict())
    assert len(errors["linear"]) == round(0.2 * len(profile_dict()["kinds"]["linear"]["points"]))
    assert float(errors["linear"].max()) < 0.2  # synthetic data from the curve's own family
    from calibration.report import pooled_holdout_errors

    pooled = pooled_holdout_errors(profile_dict(), seed=0, folds=3)  # three fifths, one after another
    assert list(pooled["linear"]) == [e for s in range(3) for e in holdout_errors(profile_dict(), s)["linear"]]


def test_quick_cpu_plan_fits_the_time_budget():
    from calibration.grid import grid

    from calibration.cpu.setup import CpuSetup
    from calibration.plan import plan

    limits = CpuSetup.limits
    todo, skipped = plan(grid(quick=True), "fp32", limits, device("cpu"))
    assert todo and all(k.estimate_s <= limits.max_kernel_s for k in todo)
    assert json.dumps([str(s) for s in skipped])  # reasons are printable


def test_validation_shapes_are_the_lowered_real_models_kernels():
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from calibration.grid import validation_specs
    from calibration.kernels import ELEMENTWISE

    specs = validation_specs("cpu", "fp32")
    shapes = {kind: [s for k, s in specs if k == kind] for kind, _ in specs}
    # the SD UNet decoder's skip-connection conv at 256 px (latent 32, deepest level 4x4)
    assert Conv(1, 2560, 1280, (4, 4), (3, 3)) in shapes["conv2d"]
    # the UNet3D's temporal conv at 128 px, 4 frames: diffusers' Conv3d with a (3, 1, 1) kernel
    assert Conv(1, 320, 320, (4, 16, 16), (3, 1, 1), bias=True) in shapes["conv3d"]
    # the LLaMA decode step's KV-cache append (2 layers, 511 cached + 1 new, 4096 wide)
    assert Elementwise("memcpy", 512 * 4096) in shapes["elementwise"]
    assert {s.op for s in shapes["elementwise"]} <= set(ELEMENTWISE)
    assert len(specs) == len({spec_key(k, s) for k, s in specs})  # distinct




def test_report_holds_one_pass_against_the_others_as_measured_and_pooled():
    import numpy as np

    from calibration.report import pass_split_errors
    from tests.test_predictor import profile_dict

    profile = profile_dict()
    # passes at +10%, -10% and on the (exact) synthetic time
    passes = {"linear": [{"shape": p["shape"], "pass_medians_s": [p["seconds"] * math.exp(0.1),
                                                                  p["seconds"] * math.exp(-0.1), p["seconds"]]}
                         for p in profile["kinds"]["linear"]["points"]]}
    measured, pooled, _ = pass_split_errors(profile, passes)["linear"]
    # The first pass against the median of the other two, e^-0.05: off by e^0.15 - 1 (hand-computed).
    assert measured == pytest.approx(np.full(len(measured), math.expm1(0.15)))
    # The neighbours' plane through curve-family points is near exact: pooling pulls toward the truth.
    assert np.all(pooled < measured)
    assert pass_split_errors(profile_dict(), None) == {}  # no raw passes: nothing to split
