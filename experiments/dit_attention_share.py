"""dit-attention-share: the attention share of a DiT's transformer time against its token count.

The video DiTs (Wan 2.1 14B and 1.3B, HunyuanVideo) are swept over frames and
resolution and FLUX.1-dev over image size, so that the transformer's sequence
spans about 1k to 120k tokens. Each point costs one transformer call with
flash attention (`stage_time`'s first call; every call of the stage is the
same) and records the attention kernels' share of the call's time (host idle
included in the denominator). The token count is read off the built graph: the
longest query any attention call of the transformer sees (video tokens, plus
the text tokens where the model attends jointly over both). The table reads the
share at round token counts by interpolating in log tokens within each
model's swept range.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.cost import stage_time
from experiments.common import Result, markdown_table, model, pyplot, save, write_csv
from workloads import build

NAME = "dit-attention-share"
TITLE = "Diffusion transformers: attention share of transformer time vs token count"
ATTENTION = "flash"
# (height, width, frames): one 384x384 frame is 576 video tokens, 512x512 from 1 to 29 frames 1k-8k,
# 720x1280 from 5 to 133 frames 7k-122k.
VIDEO_POINTS: tuple[tuple[int, int, int], ...] = (
    (384, 384, 1), *((512, 512, f) for f in (1, 5, 13, 29)), (480, 832, 81),
    *((720, 1280, f) for f in (5, 17, 33, 49, 81, 129, 133)))
IMAGE_SIDES = (256, 512, 768, 1024, 1536, 2048, 3072, 4096)
VIDEO_MODELS = ("wan2.1-t2v-14b", "hunyuanvideo", "wan2.1-t2v-1.3b")
IMAGE_MODEL = "flux1-dev"
TARGETS = (1024, 8192, 32768, 75_000, 120_000)  # token counts the table reads the share at
COLUMNS = ("workload", "height_px", "width_px", "frames", "tokens", "transformer_call_s", "attention_s",
           "attention_share")


def point(workload: str, device: str, height: int, width: int, frames: int | None) -> dict:
    """One transformer call of the workload at a size: its time and the attention kernels' share."""
    knobs = {"height": height, "width": width} | ({"frames": frames} if frames else {})
    stage = build(workload, **knobs).stage("transformer")
    call = stage_time(stage, model(device, ATTENTION))[0]
    attention = call.by_category_s.get("Attention", 0.0)
    return {"workload": workload, "height_px": height, "width_px": width, "frames": frames or 1,
            "tokens": max(op.shape.q_len for op in stage.graph().attention_ops), "transformer_call_s": call.seconds,
            "attention_s": attention, "attention_share": attention / call.seconds}


def sweep(device: str) -> list[dict]:
    rows = [point(w, device, h, wd, f) for w in VIDEO_MODELS for h, wd, f in VIDEO_POINTS]
    rows += [point(IMAGE_MODEL, device, s, s, None) for s in IMAGE_SIDES]
    return sorted(rows, key=lambda r: (r["workload"], r["tokens"]))


def share_at(rows: list[dict], workload: str, tokens: int) -> float | None:
    """The workload's attention share at a token count, interpolated in log tokens; None outside its sweep."""
    pts = [r for r in rows if r["workload"] == workload]
    xs, ys = np.log([r["tokens"] for r in pts]), [r["attention_share"] for r in pts]
    x = np.log(tokens)
    return float(np.interp(x, xs, ys)) if xs[0] <= x <= xs[-1] else None


def crossing(rows: list[dict], workload: str, share: float) -> float | None:
    """The token count where the workload's attention share first reaches `share` (log-linear), if it does."""
    pts = [r for r in rows if r["workload"] == workload]
    for a, b in zip(pts, pts[1:]):
        if a["attention_share"] < share <= b["attention_share"]:
            f = (share - a["attention_share"]) / (b["attention_share"] - a["attention_share"])
            return float(np.exp(np.log(a["tokens"]) + f * (np.log(b["tokens"]) - np.log(a["tokens"]))))
    return None


def table_rows(rows: list[dict]) -> list[dict]:
    return [{"workload": w, **{f"{t // 1000}k tokens": share_at(rows, w, t) for t in TARGETS},
             "50% at (tokens)": crossing(rows, w, 0.5)} for w in (*VIDEO_MODELS, IMAGE_MODEL)]


def plot(rows: list[dict], device: str, out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for i, w in enumerate((*VIDEO_MODELS, IMAGE_MODEL)):
        pts = [r for r in rows if r["workload"] == w]
        ax.plot([r["tokens"] for r in pts], [r["attention_share"] for r in pts], "o-", color=f"C{i}", label=w)
    ax.axhline(0.5, color="gray", ls=":", lw=1)
    ax.set(xscale="log", ylim=(0, 1), xlabel="tokens in the transformer's sequence (log)",
           ylabel="attention share of one transformer call",
           title=f"Attention share vs sequence length on {device}, {ATTENTION} attention")
    ax.legend(fontsize=8)
    return save(fig, out / f"{NAME}.png")


def percent(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def kilo(tokens: float | None) -> str:
    return "never" if tokens is None else f"{tokens / 1000:.0f}k"


def finding(rows: list[dict], table: list[dict]) -> str:
    by = {r["workload"]: r for r in table}
    first, last = (f"{t // 1000}k tokens" for t in (TARGETS[0], TARGETS[-1]))
    parts = "; ".join(f"{w} {percent(by[w][first])} at 1k, half at {kilo(by[w]['50% at (tokens)'])}, "
                      f"{percent(by[w][last])} at 120k" for w in VIDEO_MODELS)
    flux = next(r for r in rows if r["workload"] == IMAGE_MODEL and r["height_px"] == 1024)
    top = max((r for r in rows if r["workload"] == IMAGE_MODEL), key=lambda r: r["tokens"])
    most = all((by[w][last] or 0) > 0.5 for w in VIDEO_MODELS)
    return (f"Attention's share of a video DiT's transformer call grows with its tokens ({parts}), "
            f"so at 120k tokens attention is {'most' if most else 'not always most'} of the time; FLUX.1-dev spends "
            f"{flux['attention_share']:.0%} on attention at 1024x1024 ({flux['tokens'] / 1000:.1f}k tokens) and "
            f"{top['attention_share']:.0%} at {top['height_px']}x{top['width_px']} ({top['tokens'] / 1000:.0f}k).")


def run(device: str, out: Path) -> Result:
    rows = sweep(device)
    table = table_rows(rows)
    columns = ("workload", *(f"{t // 1000}k tokens" for t in TARGETS), "50% at (tokens)")
    formats = {c: "{:.1%}" for c in columns[1:-1]} | {"50% at (tokens)": "{:,.0f}"}
    return Result(NAME, TITLE, finding(rows, table), [write_csv(out / f"{NAME}.csv", COLUMNS, rows)],
                  [plot(rows, device, out)], markdown_table(columns, table, formats))
