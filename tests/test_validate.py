"""The validation runner's parts on a tiny model: profiler categories, lowering-based prediction."""

import pytest

torch = pytest.importorskip("torch")

from calibration.categories import category_of, measured_categories  # noqa: E402
from calibration.validate import FIELDS, default_cases, predict, shares  # noqa: E402
from emulator.cost import cost_model  # noqa: E402


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.norm = torch.nn.GroupNorm(4, 16)
        self.proj = torch.nn.Linear(16, 32)

    def forward(self, x):  # [B, 8, 16, 16] -> [B, 256, 32]
        h = torch.nn.functional.silu(self.norm(self.conv(x)))
        return self.proj(h.flatten(2).transpose(1, 2))


def test_aten_ops_fall_in_the_frontends_categories():
    assert category_of("aten::conv2d") == "Convolution"
    assert category_of("aten::linear") == category_of("aten::bmm") == "Linear"
    assert category_of("aten::scaled_dot_product_attention") == "Attention"
    assert category_of("aten::group_norm") == "GroupNorm"
    assert category_of("aten::silu") == category_of("aten::add_") == "Elementwise"
    assert category_of("aten::view") is None


def test_the_profiler_and_the_prediction_see_the_same_categories():
    model, x = Tiny().eval(), torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        model(x)
        measured = measured_categories(lambda: model(x), "cpu")
        cost = cost_model("cpu")
        predicted, graph = predict(model, (x,), {}, cost, None)
    assert {"Convolution", "GroupNorm", "Linear", "Elementwise"} <= set(measured)
    assert {"Convolution", "GroupNorm", "Linear", "Elementwise"} <= set(predicted.by_category_s)
    assert sum(shares(measured).values()) == pytest.approx(1.0)
    assert [op.shape.kind for op in graph.ops][:2] == ["conv2d", "group_norm"]


def test_cpu_cases_are_reduced_and_cover_both_attentions():
    cases = default_cases("cpu")
    assert {c.attention for c in cases} == {"flash", "baseline"}
    assert {c.name for c in cases} == {"sd-unet", "sd-vae-decoder", "unet3d", "llama2-7b-prefill", "llama2-7b-decode"}
    assert all(c.layers for c in cases if c.name.startswith("llama"))
    assert "max_share_diff_points" in FIELDS
    one = default_cases("cpu", ("llama2-7b-prefill",), ("flash",))  # the quick validation's one case
    assert [(c.name, c.attention, c.size, c.layers) for c in one] == [("llama2-7b-prefill", "flash", 128, 2)]


def test_kernels_alone_cover_every_kernel_of_the_graph_once_per_use(monkeypatch):
    from collections import Counter

    from calibration import timers
    from calibration.cpu.setup import CpuSetup
    from calibration.isolated import isolated_seconds
    from emulator.cost.kernels import kernel_kind

    # Each distinct kernel "takes" 1 ms per run (a stand-in clock: the accounting, not the machine, is tested).
    timed = []

    def one_ms(run, clock, **kw):
        run(0)  # the real kernel runs once, so a shape torch refused would still fail here
        timed.append(1)
        return timers.Timing(median_s=1e-3, min_s=1e-3, spread=0.0, repeats=1, rejected=0)

    monkeypatch.setattr(timers, "measure", one_ms)
    model, x = Tiny().eval(), torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        _, graph = predict(model, (x,), {}, cost_model("cpu"), None)
        alone = isolated_seconds(graph, "flash", "fp32", CpuSetup(), 32e6)
    uses = Counter(kernel_kind(op, "flash") for op in graph.ops)
    assert alone.pop("untimed") == 0
    # Every use of a kernel counted once at its time; each distinct (kind, shape) timed once.
    assert alone == pytest.approx({kind: n * 1e-3 for kind, n in uses.items()})
    assert len(timed) == len({(kernel_kind(op, "flash"), op.shape) for op in graph.ops})

    class Level:
        """The machine reads 2x, then 8x the profile's times around the kernels: they are divided by 4."""

        readings = iter([2.0, 8.0])

        def read(self) -> float:
            return next(self.readings)

    with torch.no_grad():
        at_profile = isolated_seconds(graph, "flash", "fp32", CpuSetup(), 32e6, Level())
    assert at_profile.pop("untimed") == 0
    assert at_profile == pytest.approx({kind: t / 4 for kind, t in alone.items()})


def test_rounds_keep_the_median_timing_and_rewrite_the_csv(tmp_path, monkeypatch):
    import csv

    import calibration.validate as v

    timings = iter([1.0, 2.0, 1.6, 2.4, 1.2, 1.9])  # case A, case B, round after round
    monkeypatch.setattr(v, "default_cases", lambda device, models, attentions: [
        v.Case("sd-unet", 1, 256, "flash"), v.Case("sd-vae-decoder", 1, 128, "flash")])
    firsts = []

    def fake_case(case, device, profile, isolated, first=None):
        firsts.append(first)
        if first:  # a later round: the timing only
            return {"case": case.label, "attention": case.attention, "measured_s": next(timings)}
        return {"case": case.label, "attention": case.attention, "measured_s": next(timings), "predicted_s": 1.5,
                "error": 0.0, "max_share_diff_points": 0.0}

    monkeypatch.setattr(v, "validate_case", fake_case)
    rows = v.validate("cpu", "cpu", tmp_path / "v.csv", rounds=3)
    assert firsts[:2] == [None, None] and all(f is not None for f in firsts[2:])  # only round 1 predicts
    assert [r["measured_s"] for r in rows] == [1.2, 2.0]  # medians of (1.0, 1.6, 1.2) and (2.0, 2.4, 1.9)
    assert rows[0]["error"] == pytest.approx(0.25)  # re-taken against the median
    written = list(csv.DictReader((tmp_path / "v.csv").open()))
    assert written[1]["measured_rounds_s"] == "2.0000 2.4000 1.9000"
