"""dit-breakdown: where the diffusion transformers' inference time goes, per operator category and per stage.

The study's operator breakdown (its Fig. 7) asked of today's DiTs: the image
DiTs (FLUX.1, SD3.5, PixArt-Sigma) and the video DiTs (CogVideoX, HunyuanVideo,
Wan 2.1, LTX-Video), each at its default knobs. Each stage is costed once per
attention implementation (one call, times its calls per request, as
`stage_time` does); its seconds are split into the kernel time of each operator
category plus `host idle`, the time the device waits for the host's dispatch,
so a request's parts sum to its time. Stages group into text encoder(s),
transformer and VAE decoder. Shares are of the flash-attention request time;
the baseline (unfused) attention rows give the end-to-end speedup of flash.
"""

from __future__ import annotations

from pathlib import Path

from emulator.cost import stage_time
from emulator.cost.timeline import CallTime
from emulator.ops import CATEGORIES
from emulator.pipeline import Pipeline
from experiments.common import ATTENTIONS, Result, markdown_table, model, pyplot, save, write_csv
from workloads import build, image_dits, video_dits

NAME = "dit-breakdown"
TITLE = "Diffusion transformers: operator and stage time breakdown"
DITS: tuple[str, ...] = tuple(w.name for w in (*image_dits.WORKLOADS, *video_dits.WORKLOADS))
VIDEO_DITS: tuple[str, ...] = tuple(w.name for w in video_dits.WORKLOADS)
GROUPS = ("text encoder", "transformer", "VAE decoder")
PARTS = (*CATEGORIES, "host idle")
SHOWN = "flash"  # the implementation whose shares the figure, the stage CSV and the finding give
COLUMNS = ("workload", "attention", "stage", "category", "seconds", "share_of_request")
STAGE_COLUMNS = ("workload", "request_s", "baseline_request_s", "flash_speedup", "text_encoder_share",
                 "transformer_share", "vae_decoder_share", "attention_share", "linear_share", "convolution_share")


def stage_group(stage: str) -> str:
    """The group of a stage name: text_encoder, text_encoder_2 -> text encoder; vae_decoder -> VAE decoder."""
    if stage.startswith("text_encoder"):
        return "text encoder"
    if stage.startswith("vae"):
        return "VAE decoder"
    if stage == "transformer":
        return "transformer"
    raise ValueError(f"stage {stage!r} is in none of {GROUPS}")


def parts(t: CallTime) -> dict[str, float]:
    """Seconds per category and host idle; they sum to t.seconds."""
    return {c: t.by_category_s.get(c, 0.0) for c in CATEGORIES} | {"host idle": t.host_idle_s}


def pipeline_rows(p: Pipeline, device: str, attention: str) -> list[dict]:
    """Rows (stage group x part) of one request; shares of the request's time sum to 1."""
    seconds: dict[tuple[str, str], float] = {}
    for s in p.stages:
        request = stage_time(s, model(device, attention))[1]
        for part, x in parts(request).items():
            key = (stage_group(s.name), part)
            seconds[key] = seconds.get(key, 0.0) + x
    total = sum(seconds.values())
    return [{"workload": p.workload, "attention": attention, "stage": g, "category": c, "seconds": x,
             "share_of_request": x / total} for (g, c), x in seconds.items()]


def summed(rows: list[dict], workload: str, attention: str = SHOWN, **match) -> float:
    """Seconds of a workload's rows under an attention implementation, filtered by column values."""
    return sum(r["seconds"] for r in rows if r["workload"] == workload and r["attention"] == attention
               and all(r[k] == v for k, v in match.items()))


def summary(rows: list[dict], workload: str) -> dict:
    total, base = summed(rows, workload), summed(rows, workload, "baseline")
    share = {g: summed(rows, workload, stage=g) / total for g in GROUPS}
    cat = {c: summed(rows, workload, category=c) / total for c in ("Attention", "Linear", "Convolution")}
    return {"workload": workload, "request_s": total, "baseline_request_s": base, "flash_speedup": base / total,
            "text_encoder_share": share["text encoder"], "transformer_share": share["transformer"],
            "vae_decoder_share": share["VAE decoder"], "attention_share": cat["Attention"],
            "linear_share": cat["Linear"], "convolution_share": cat["Convolution"]}


def plot(rows: list[dict], device: str, out: Path) -> Path:
    """Two panels of stacked bars per model: share of request time by category, and by stage."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, 5.5), gridspec_kw={"width_ratios": [3, 2]})
    colors = plt.get_cmap("tab20")
    xs = range(len(DITS))
    for ax, column, keys in ((left, "category", PARTS), (right, "stage", GROUPS)):
        bottom = [0.0] * len(DITS)
        for k, key in enumerate(keys):
            h = [summed(rows, n, **{column: key}) / summed(rows, n) for n in DITS]
            if any(h):
                ax.bar(xs, h, 0.7, bottom=bottom, color=colors(k), edgecolor="white", lw=0.3, label=key)
            bottom = [b + x for b, x in zip(bottom, h)]
        ax.set_xticks(xs, DITS, fontsize=8, rotation=35, ha="right")
        ax.set(ylabel="share of request time", ylim=(0, 1), title=f"by {column}")
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(f"One request of each DiT at its default knobs on {device}, flash attention")
    fig.tight_layout()
    return save(fig, out / f"{NAME}.png")


def finding(table: list[dict]) -> str:
    by = {r["workload"]: r for r in table}
    video = [by[n] for n in VIDEO_DITS]
    top_vae = max(table, key=lambda r: r["vae_decoder_share"])
    low_attn = min(table, key=lambda r: r["attention_share"])
    high_attn = max(table, key=lambda r: r["attention_share"])
    vae = ", ".join(f"{r['workload']} {r['vae_decoder_share']:.1%}" for r in video)
    return (f"With flash attention the transformer takes {min(r['transformer_share'] for r in table):.0%}-"
            f"{max(r['transformer_share'] for r in table):.0%} of each DiT request, and attention kernels "
            f"{low_attn['attention_share']:.0%} ({low_attn['workload']}) to {high_attn['attention_share']:.0%} "
            f"({high_attn['workload']}) of the request; VAE decoding takes {vae} of the video DiTs' requests, "
            f"and of any DiT's at most {top_vae['vae_decoder_share']:.0%} ({top_vae['workload']}); flash speeds up "
            f"requests {min(r['flash_speedup'] for r in table):.2f}-{max(r['flash_speedup'] for r in table):.2f}x "
            f"over unfused attention.")


def run(device: str, out: Path) -> Result:
    rows = []
    for name in DITS:
        p = build(name)
        rows += [r for a in ATTENTIONS for r in pipeline_rows(p, device, a)]
    table = [summary(rows, n) for n in DITS]
    csvs = [write_csv(out / f"{NAME}.csv", COLUMNS, rows), write_csv(out / f"{NAME}-stages.csv", STAGE_COLUMNS, table)]
    formats = {c: "{:.1%}" for c in STAGE_COLUMNS if c.endswith("share")} | {
        "request_s": "{:.3g}", "baseline_request_s": "{:.3g}", "flash_speedup": "{:.2f}"}
    return Result(NAME, TITLE, finding(table), csvs, [plot(rows, device, out)],
                  markdown_table(STAGE_COLUMNS, table, formats))
