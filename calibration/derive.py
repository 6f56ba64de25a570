"""`python -m calibration derive`: A100 and H100 profiles derived from public measurements.

Neither GPU is measured here; each profile is built from the device's
datasheet and public kernel measurements (calibration/public/SOURCES.md):
- linear, RMSNorm, SiLU-and-multiply, rotary, residual add and embedding
  points: Vidur's LLaMA-2-7B per-layer timings (fp16, 1..4096 tokens, TP 1-8);
- flash and baseline attention points: the FlashAttention benchmark figures.
  H100 forward throughput is read directly. The A100 figure is forward +
  backward only, so its forward throughput is estimated as the A100 fwd+bwd
  figure times the forward / fwd+bwd ratio the H100 figures show for the same
  implementation, head dim, causality and sequence length;
- convolutions and batched matmuls: modelled from the GEMM behaviour they
  lower to (implicit GEMM): the linear kind's fitted curve at their FLOPs and
  bytes (attained matrix rate, bandwidth and launch overhead);
- other memory-bound kernels (group/layer norm, softmax, resample): from
  bandwidth with a size-dependent ramp and launch overhead: the RMSNorm or
  elementwise kind's fitted curve.
Curve rates are bounded by the datasheet peaks; the attention curves take the
GEMMs' launch overhead (the figures hold large kernels only).
For the last two groups, where a measured H100 profile exists (the A100
profile), the kernel times measured on the H100 are transferred instead: each
is scaled by the ratio of this GPU's donor curve to the H100's donor curve at
the kernel's FLOPs and bytes, keeping the shape effects the H100 measured that
a GEMM curve cannot know (kinds marked `transferred`). Without one, the donor
curve is evaluated at the calibration grid and every suite shape (kinds marked
`synthesized`). Kinds fitted to public data are marked `public`. Host time per
op and per kernel: the device catalog's values.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from calibration.grid import grid, workload_specs
from calibration.write import profile_document, write
from emulator.cost.predictor import DEFAULT_FEATURES, KindPredictor, curve_seconds, fit_predictor
from emulator.cost.profile import Profile, load_profile, shape_from_json, shape_to_json
from emulator.devices import device as catalog_device
from emulator.shapes import Attention, Elementwise, Embedding, Linear, Norm

PUBLIC = Path(__file__).with_name("public")
DTYPE = "fp16"
VIDUR = "microsoft/vidur data/profiling/compute/{gpu}/meta-llama/Llama-2-7b-hf/mlp.csv @7d47513 (MIT)"
FLASH = ("Dao-AILab/flash-attention assets/flash2_a100_fwd_bwd_benchmark.png, flash2_h100_fwd_bwd_benchmark.png, "
         "flash3_fp16_fwd.png @0251105 (BSD-3-Clause)")
HIDDEN, FFN, VOCAB_PADDED = 4096, 11008, 32768
SUITE = ["llama2-7b", "imagen", "stable-diffusion", "muse", "parti", "prod-image", "make-a-video", "phenaki"]


def vidur_points(path: Path) -> dict[str, dict]:
    """{kind: {shape: [seconds, ...]}} from Vidur's per-layer timings (medians, ms -> s)."""
    out: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    with path.open() as f:
        for row in csv.DictReader(f):
            m, tp = int(row["num_tokens"]), int(row["num_tensor_parallel_workers"])
            if m > 128 and m % 128:  # every 8 tokens up to 128, every 128 beyond: dense enough, small file
                continue

            def t(op):
                return float(row[f"time_stats.{op}.median"]) * 1e-3

            out["linear"][Linear(m, HIDDEN, 3 * HIDDEN // tp, bias=False)].append(t("attn_pre_proj"))
            out["linear"][Linear(m, HIDDEN // tp, HIDDEN, bias=False)].append(t("attn_post_proj"))
            out["linear"][Linear(m, HIDDEN, 2 * FFN // tp, bias=False)].append(t("mlp_up_proj"))
            out["linear"][Linear(m, FFN // tp, HIDDEN, bias=False)].append(t("mlp_down_proj"))
            out["elementwise"][Elementwise("swiglu", m * FFN // tp, 2)].append(t("mlp_act"))
            out["elementwise"][Elementwise("rope", 2 * m * HIDDEN // tp, 1)].append(t("attn_rope"))
            if tp == 1:  # these do not depend on tensor parallelism
                norm = Norm("rms", m * HIDDEN, HIDDEN)
                out["rms_norm"][norm] += [t("input_layernorm"), t("post_attention_layernorm")]
                out["elementwise"][Elementwise("add", m * HIDDEN, 2)].append(t("add"))
                out["embedding"][Embedding(m, VOCAB_PADDED, HIDDEN)].append(t("emb"))
    return out


def _tflops(rows, gpu, pass_, impl):
    """{(causal, head_dim, seqlen): (TFLOP/s, row)}; bars the figure marks OOM have no value."""
    return {(r["causal"] == "True", int(r["head_dim"]), int(r["seqlen"])): (float(r["tflops_value"]), r)
            for r in rows if r["gpu"] == gpu and r["pass"] == pass_ and r["implementation"] == impl
            and r["tflops_value"].replace(".", "", 1).isdigit()}


def attention_points(path: Path, gpu: str) -> dict[str, dict]:
    """Forward attention times from the FlashAttention benchmark figures."""
    rows = list(csv.DictReader(path.open()))
    h100 = "H100 80GB SXM5"
    families = {"attention_flash": ("FlashAttention-2", "FlashAttention-2"),
                "attention_baseline": ("Standard attention", "Pytorch (standard attention)")}
    out: dict[str, dict] = defaultdict(lambda: defaultdict(list))
    for kind, (fwd_name, fwdbwd_name) in families.items():
        h100_fwd = _tflops(rows, h100, "fwd", fwd_name)
        if gpu == "h100":
            forward = h100_fwd
        else:  # A100: fwd+bwd only; scale by the H100's forward / fwd+bwd ratio
            h100_both = _tflops(rows, h100, "fwd+bwd", fwdbwd_name)
            a100_both = _tflops(rows, "A100 80GB SXM4", "fwd+bwd", fwdbwd_name)
            forward = {k: (v * h100_fwd[k][0] / h100_both[k][0], r) for k, (v, r) in a100_both.items()
                       if k in h100_fwd and k in h100_both}
        for (causal, d, n), (tflops, r) in forward.items():
            batch, heads = int(r["batch_size"]), int(r["n_heads"])
            flops = 4 * batch * heads * n * n * d / (2 if causal else 1)  # the benchmark's convention
            shape = Attention(batch, heads, n, n, d, "causal" if causal else "self", causal=causal)
            out[kind][shape].append(flops / (tflops * 1e12))
    return out


BORROWED = {"matmul": "linear", "conv2d": "linear", "conv1d": "linear", "group_norm": "rms_norm",
            "layer_norm": "rms_norm", "softmax": "elementwise", "resample": "elementwise"}
GPU_NAMES = {"a100": "a100-sxm4-80gb", "h100": "h100-sxm"}


def _entry(kind: str, predictor: KindPredictor, shapes, seconds, source: str, backend: str) -> dict:
    return {"features": DEFAULT_FEATURES[kind], "source": source, "backend": backend,
            "curve": predictor.curve.asdict(),
            "points": [{"shape": shape_to_json(s), "seconds": t} for s, t in zip(shapes, seconds)]}


def public_kinds(gpu: str) -> tuple[dict, dict[str, KindPredictor]]:
    """Profile entries and predictors of the kinds the public data measures on this GPU."""
    dev = catalog_device(GPU_NAMES[gpu])
    public = vidur_points(PUBLIC / f"vidur_{gpu}_llama2_7b_mlp.csv")
    public.update(attention_points(PUBLIC / "flashattention_tflops.csv", gpu))
    kinds, predictors = {}, {}
    for kind in sorted(public, key=lambda k: k.startswith("attention")):  # linear first: attention needs it
        points = public[kind]
        shapes, seconds = list(points), [sum(v) / len(v) for v in points.values()]
        # The attention figures hold large kernels only, which cannot tell a launch overhead: take the GEMMs'.
        overhead = predictors["linear"].curve.overhead_s if kind.startswith("attention") else None
        predictors[kind] = fit_predictor(kind, DTYPE, shapes, seconds, dev, overhead_s=overhead)
        backend = "FlashAttention-2 / PyTorch standard attention" if "attention" in kind else "vLLM/PyTorch (Vidur)"
        kinds[kind] = _entry(kind, predictors[kind], shapes, seconds, "public", backend)
    return kinds, predictors


def derive(gpu: str, transfer_from: Path | None = None) -> dict:
    """The derived profile of `gpu`; with `transfer_from` (a measured profile of the H100), its
    kinds that the public data does not cover are transferred from it instead of synthesized."""
    name = GPU_NAMES[gpu]
    dev = catalog_device(name)
    kinds, predictors = public_kinds(gpu)
    citations = [VIDUR.format(gpu=gpu), FLASH, "datasheet: shared/reference/devices.md"]
    if transfer_from is not None:
        measured = Profile(load_profile(transfer_from))
        kinds.update(transferred_kinds(gpu, measured, predictors, dev))
        prov = measured.data["provenance"]
        citations.append(f"measured on the lent H100: calibration/profiles/{transfer_from.name} "
                         f"({prov['device_fingerprint'].get('gpu')}, {prov['date'][:10]})")
    else:
        kinds.update(synthesized_kinds(predictors))
    provenance = {"source": "derived", "method": "python -m calibration derive",
                  "description": "calibration/derive.py: datasheet and public kernel measurements",
                  "device_fingerprint": {"gpu": dev.label}, "citations": citations}
    host = {"s_per_kernel": dev.host_us_per_kernel * 1e-6, "s_per_op": dev.host_us_per_op * 1e-6,
            "included_in_kernel_times": False, "source": dev.host_source}
    return profile_document(name, DTYPE, provenance, host, dict(sorted(kinds.items())), [])


def transferred_kinds(gpu: str, measured: Profile, predictors: dict, dev) -> dict:
    """The BORROWED kinds: the measured H100 times, scaled by how much slower this GPU's public data shows
    the donor kind to be at the same FLOPs and bytes (conv: its implicit GEMM; norms: RMSNorm; ...)."""
    _, reference_donors = public_kinds("h100")
    kinds = {}
    for kind, donor in BORROWED.items():
        source = measured.predictors[kind]
        shapes = [shape_from_json(kind, p["shape"]) for p in measured.data["kinds"][kind]["points"]]
        seconds = [source.predict(s) * curve_seconds(kind, DTYPE, predictors[donor].curve, s)
                   / curve_seconds(kind, DTYPE, reference_donors[donor].curve, s) for s in shapes]
        predictor = fit_predictor(kind, DTYPE, shapes, seconds, dev)
        kinds[kind] = _entry(kind, predictor, shapes, seconds,
                             f"transferred: measured h100-sxm x ({gpu}/h100 {donor} curve ratio)",
                             f"{measured.data['kinds'][kind]['backend']} (on the H100)")
    return kinds


def synthesized_kinds(predictors: dict) -> dict:
    """The BORROWED kinds as the donor's curve at their FLOPs and bytes, at the grid and suite shapes;
    no correction (no measurement to correct to)."""
    targets = defaultdict(dict)
    for kind, shape in grid(quick=False) + workload_specs(SUITE, DTYPE):
        if kind in BORROWED:
            targets[kind][shape] = None
    kinds = {}
    for kind, donor in BORROWED.items():
        shapes = list(targets[kind])
        curve = predictors[donor].curve
        seconds = [curve_seconds(kind, DTYPE, curve, s) for s in shapes]
        kinds[kind] = _entry(kind, KindPredictor(kind, DTYPE, curve, shapes, seconds), shapes, seconds,
                             f"synthesized: {donor} curve", f"modelled from {donor}")
    return kinds


def derive_all(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    measured_h100 = out_dir / "h100-sxm.json"
    if not (measured_h100.exists() and load_profile(measured_h100)["provenance"]["source"] == "measured"):
        measured_h100 = None
    for gpu, filename, transfer in (("a100", "a100-sxm4-80gb.json", measured_h100),
                                    ("h100", "h100-sxm-derived.json", None)):
        path = out_dir / filename
        write(path, derive(gpu, transfer))
        print(f"wrote {path}")
