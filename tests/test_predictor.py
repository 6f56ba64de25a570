"""Kernel-time predictors and profile files: exact at measured points, domain, fallback, refusal of bad files."""

import json

import numpy as np
import pytest

from emulator.cost import Profile, load_profile, stage_time
from emulator.cost.predictor import Curve, fit_predictor
from emulator.cost.profile import SCHEMA, VERSION, shape_to_json
from emulator.errors import UserError
from emulator.ops import Op
from emulator.shapes import Conv, Linear

TRUE_CURVE = Curve(flops_per_s=50e12, bytes_per_s=1e12, overhead_s=4e-6)
LINEARS = [Linear(m, k, n) for m in (1, 8, 64, 512, 4096) for k in (256, 1024, 4096) for n in (256, 1024, 4096)]


def synthetic_seconds(shapes, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    ops = [Op("", s, "fp16") for s in shapes]
    return [TRUE_CURVE(op.flops, op.bytes) * float(np.exp(rng.normal(0, noise))) for op in ops]


def test_fit_recovers_the_constants_that_generated_the_data():
    p = fit_predictor("linear", "fp16", LINEARS, synthetic_seconds(LINEARS))
    assert p.curve.flops_per_s == pytest.approx(50e12, rel=0.02)
    assert p.curve.bytes_per_s == pytest.approx(1e12, rel=0.02)
    assert p.curve.overhead_s == pytest.approx(4e-6, rel=0.05)


def test_prediction_is_exact_at_measured_points_and_close_between_them():
    seconds = synthetic_seconds(LINEARS, noise=0.1)
    p = fit_predictor("linear", "fp16", LINEARS, seconds)
    for s, t in zip(LINEARS, seconds):
        assert p.predict(s) == pytest.approx(t, rel=1e-9)
    between = Linear(128, 512, 2048)
    truth = TRUE_CURVE(Op("", between, "fp16").flops, Op("", between, "fp16").bytes)
    assert p.predict(between) == pytest.approx(truth, rel=0.15)


def test_one_row_products_are_told_apart_from_tiled_ones():
    # A library with a matrix-vector kernel for one row that streams the weights at 1 TB/s, and a tiled
    # kernel from two rows on that pads the rows to a 16-row tile at a quarter of that rate: m = 2..16
    # cost the same, 4x the one-row time. A held-out m = 4 at the grid's corner, whose nearest
    # neighbours are the m = 1 and m = 16 of its k x n, must come out near the tile's time (a plane in
    # log m alone through those neighbours gave 45% less, halfway to the one-row time).
    def seconds(s):
        rows = 1 if s.m == 1 else -(-s.m // 16) * 16 / 4
        return 4e-6 + rows * s.k * s.n * 2 / 1e12

    ks = ns = (1024, 2048, 4096, 8192)
    held = Linear(4, 8192, 8192)
    shapes = [Linear(m, k, n) for m in (1, 4, 16, 64) for k in ks for n in ns if Linear(m, k, n) != held]
    p = fit_predictor("linear", "fp16", shapes, [seconds(s) for s in shapes])
    assert p.predict(held) == pytest.approx(seconds(held), rel=0.1)


def test_the_correction_fades_from_one_to_two_spacings_and_the_domain_ends_there():
    # Four linears along m, a factor 2 apart (log spacing ln 2 in the m feature, the others equal), each
    # measured at twice the curve: the correction is ln 2 wherever it is trusted (hand-computed).
    from emulator.cost.predictor import KindPredictor

    shapes = [Linear(m, 1024, 1024) for m in (64, 128, 256, 512)]
    curve = [TRUE_CURVE(Op("", s, "fp16").flops, Op("", s, "fp16").bytes) for s in shapes]
    p = KindPredictor("linear", "fp16", TRUE_CURVE, shapes, [2 * t for t in curve])
    assert p.spacing == pytest.approx(np.log(2))

    def ratio(m):
        return p.predict(Linear(m, 1024, 1024)) / p.curve_time(Linear(m, 1024, 1024))

    assert ratio(1024) == pytest.approx(2.0)  # one spacing from 512: in full
    assert ratio(int(512 * 2**1.5)) == pytest.approx(2**0.5, rel=1e-3)  # 1.5 spacings: half the log correction
    assert ratio(2048) == pytest.approx(1.0)  # two spacings: the curve alone
    assert p.covers(Linear(2048, 1024, 1024)) and not p.covers(Linear(4096, 1024, 1024))
    # Far from every point on another axis the shape is not covered, even between measured values of m.
    assert not p.covers(Linear(128, 1024, 8192))


def test_a_shape_far_from_every_point_gets_the_curve_not_its_distant_neighbours_plane():
    # The H100 profile measured attention up to batch x heads 128; a decode step of batch 1024 x 4 heads
    # against a 128-token cache lies ln(4096/128)-ish away in that feature. Its neighbours' plane
    # multiplied the curve 3.4x (608 us, where aiconfigurator-core 0.12.0 measured 137 us on an H100);
    # beyond two spacings it gets the curve (178 us) and is counted as a fallback.
    from emulator.cost import cost_model
    from emulator.shapes import Attention

    h100 = cost_model("h100-sxm")
    op = Op("a", Attention(1024, 4, 1, 128, 128, "self", kv_cache=True), "fp16")
    predictor = h100.predictors["attention_flash"]
    assert not h100.covers(op)
    assert h100.op_time(op) == pytest.approx(predictor.curve_time(op.shape))


def profile_dict(kinds=("linear",)):
    seconds = synthetic_seconds(LINEARS)
    return {
        "schema": SCHEMA, "version": VERSION, "device": "a100-sxm4-80gb", "dtype": "fp16",
        "provenance": {"source": "measured", "method": "synthetic"},
        "host": {"s_per_kernel": 5e-6, "s_per_op": 5e-6, "included_in_kernel_times": False},
        "kinds": {"linear": {"features": "linear", "backend": "synthetic", "curve": TRUE_CURVE.asdict(),
                             "points": [{"shape": shape_to_json(s), "seconds": t}
                                        for s, t in zip(LINEARS, seconds)]}},
    }


def test_profile_falls_back_outside_its_domain_and_counts_it():
    import workloads

    profile = Profile(profile_dict())
    covered = Op("l", Linear(512, 1024, 1024), "fp16")
    assert profile.covers(covered)
    assert not profile.covers(Op("c", Conv(1, 64, 64, (32, 32), (3, 3)), "fp16"))  # kind not measured
    assert not profile.covers(Op("l", Linear(512, 1024, 1024), "fp32"))  # other element width
    unet = workloads.build("stable-diffusion").stage("unet")
    first, request = stage_time(unet, profile)
    graph = unet.graph()
    expected = sum(1 for op in graph if not profile.covers(op))
    assert 0 < first.fallback_ops == expected < len(graph)
    assert request.fallback_ops == expected * unet.calls


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema="something-else"), "not a profile file"),
    (lambda d: d.update(version=99), "version 99"),
    (lambda d: d.pop("host"), "missing key 'host'"),
    (lambda d: d["kinds"]["linear"]["points"][0].update(seconds=-1), "seconds"),
    (lambda d: d["kinds"]["linear"].update(features="warp"), "features must name one of"),
    (lambda d: d.update(version=1), "convert it with `python -m calibration convert"),
    (lambda d: d["provenance"].pop("source"), "provenance.source"),
    (lambda d: d["kinds"]["linear"]["points"][0]["shape"].update(m=0), "not a valid linear shape"),
    (lambda d: d["kinds"].update(warp_drive={}), "unknown kernel kind"),
    (lambda d: d["kinds"]["linear"].pop("curve"), "curve"),
    (lambda d: d.update(device="tpu"), "unknown device"),
    # case 5: times and rates finite and positive (json reads Infinity and NaN), a kernel at most an hour
    (lambda d: d["kinds"]["linear"]["points"][0].update(seconds=float("inf")), r"\[0\].seconds must be a positive"),
    (lambda d: d["kinds"]["linear"]["points"][0].update(seconds=1e30), "got 1e[+]30"),
    (lambda d: d["kinds"]["linear"]["points"][0].update(median_s=float("nan")), "median_s must be a positive"),
    (lambda d: d["kinds"]["linear"]["points"][0].update(seconds=True), "seconds must be a positive"),
    (lambda d: d["kinds"]["linear"]["curve"].update(flops_per_s=float("inf")), "curve.flops_per_s must be a finite"),
    (lambda d: d["kinds"]["linear"]["curve"].update(bytes_per_s=0), "curve.bytes_per_s must be positive"),
    (lambda d: d["kinds"]["linear"]["curve"].update(overhead_s=1e30), "curve.overhead_s must be at most 3600"),
    (lambda d: d["kinds"]["linear"]["curve"].update(cache_bytes=1e6), "cache_bytes_per_s must be positive"),
    (lambda d: d["kinds"]["linear"].update(features={}), "features must name one of"),
    (lambda d: d.update(device=[]), r"device must name a catalog device, got \[\]"),
    (lambda d: d["host"].update(s_per_kernel=float("inf")), "host.s_per_kernel must be a number of seconds"),
    (lambda d: d.update(host=[]), "host.s_per_kernel"),
    (lambda d: d.update(kinds=[]), "kinds must be a mapping"),
    (lambda d: d.update(dtype=[]), r"dtype \[\] is not one of"),
    (lambda d: d["kinds"]["linear"]["points"][0].update(shape=5), "not a valid linear shape"),
])
def test_bad_profiles_are_refused_in_one_line(tmp_path, mutate, message):
    data = profile_dict()
    mutate(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message) as err:
        Profile(load_profile(path))
    assert "\n" not in str(err.value)


def test_truncated_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(profile_dict())[:500])
    with pytest.raises(UserError, match="corrupted"):
        load_profile(path)
    with pytest.raises(UserError, match="no such profile"):
        load_profile(tmp_path / "absent.json")


def test_convs_pytorch_keeps_for_itself_are_told_apart_from_onednn_ones(monkeypatch):
    # A CPU where PyTorch's own im2col + GEMM (one small image) runs at a third of oneDNN's rate. A held-out
    # native conv whose nearest neighbours are mostly oneDNN convs (more channels, larger images, more
    # images) must come out near its own rate; without the backend feature it lands between the two.
    import emulator.cost.predictor as predictor
    from emulator.devices import device

    def seconds(s):
        rate = 1e11 / (3 if predictor.native_cpu_conv(s) else 1)
        return 5e-6 + Op("", s, "fp32").flops / rate

    held = Conv(1, 320, 320, (8, 8), (3, 3))  # 20480 input elements: native
    shapes = [Conv(b, c, c, (h, h), (3, 3)) for b in (1, 2, 4) for c in (80, 160, 320, 640, 1280)
              for h in (2, 4, 8, 16)]
    shapes.remove(held)
    cpu = device("cpu")

    def predicted(features):
        p = fit_predictor("conv2d", "fp32", shapes, [seconds(s) for s in shapes], cpu, features=features)
        return p.predict(held)

    assert predicted("conv-per-image") == pytest.approx(seconds(held), rel=0.1)
    # The same features without the backend one (the last): the held-out conv lands between the two rates.
    monkeypatch.setitem(predictor.FEATURE_SETS, "no-backend", lambda s: predictor._conv_per_image(s)[:-1])
    assert abs(predicted("no-backend") / seconds(held) - 1) > 0.2


@pytest.mark.parametrize("shape", [
    Conv(1, 320, 320, (8, 8), (3, 3)),  # 20480 input elements: the largest PyTorch keeps for itself
    Conv(1, 321, 320, (8, 8), (3, 3)),  # one channel more: oneDNN
    Conv(2, 8, 8, (4, 4), (3, 3)),  # two images: oneDNN
    Conv(1, 8, 8, (4, 4), (3, 3), groups=2),  # groups: oneDNN
    Conv(1, 8, 8, (16, 16), (5, 5)),  # both kernel sides above 3: oneDNN
    Conv(1, 8, 8, (16, 16), (1, 3)),
    Conv(1, 8, 8, (16,), (5,)),  # a conv1d is a conv2d of height 1: its kernel is [1, 5], native
    Conv(4, 8, 8, (16,), (3,)),  # several sequences: oneDNN
    Conv(1, 320, 320, (4, 16, 64), (3, 1, 1)),  # a conv3d's width is not counted: [N, C, D, H] is 20480
    Conv(1, 320, 320, (4, 17, 16), (3, 1, 1)),  # 21760: oneDNN
    Conv(1, 8, 8, (4, 16, 16), (1, 5, 5)),  # the last two kernel sides above 3: oneDNN
    Conv(1, 8, 8, (4, 16, 16), (5, 3, 5)),
])
def test_the_native_conv_rule_is_the_backend_torch_picks(shape):
    # The independent source: the aten op torch's dispatcher runs for the conv, seen by its profiler.
    torch = pytest.importorskip("torch")
    from emulator.cost.predictor import native_cpu_conv

    if torch.get_num_threads() < 2:
        pytest.skip("with one thread PyTorch keeps some 1x1 convs for itself as well")
    x = torch.randn(shape.batch, shape.c_in, *shape.size)
    w = torch.randn(shape.c_out, shape.c_in // shape.groups, *shape.kernel)
    padding = tuple(k // 2 for k in shape.kernel)
    with torch.profiler.profile() as prof:
        conv = {1: torch.nn.functional.conv1d, 2: torch.nn.functional.conv2d, 3: torch.nn.functional.conv3d}
        conv[len(shape.size)](x, w, None, shape.stride, padding, 1, shape.groups)
    names = {e.name for e in prof.events()}
    assert ("aten::mkldnn_convolution" in names) == (not native_cpu_conv(shape)), names
