"""temporal: spatial vs temporal attention in video generation.

Part 1, Make-A-Video at its defaults: time (baseline and flash, on the device)
and FLOPs per request of its spatial and its temporal attention calls, every
stage included. Part 2, a TimeSformer-style space-time attention benchmark of
FLOPs alone: per frame, spatial attention over the H x W patch tokens
([frames, heads, HW, d]); per patch, temporal attention over the frames
([HW, heads, frames, d]); for 8 to 256 frames at several patch grids, with the
frame count from which temporal attention costs more FLOPs than spatial.
"""

from __future__ import annotations

from pathlib import Path

from emulator.ops import Op
from emulator.shapes import Attention
from experiments.common import (
    ATTENTIONS,
    Result,
    markdown_table,
    model,
    pyplot,
    save,
    write_csv,
)
from workloads import build

NAME = "temporal"
TITLE = "Spatial vs temporal attention in video models"
MAV_COLUMNS = ("variant", "calls", "flops", "baseline_s", "flash_s")
COLUMNS = ("grid", "tokens_per_frame", "frames", "spatial_flops", "temporal_flops")
CROSS_COLUMNS = ("grid", "tokens_per_frame", "crossover_frames")
GRIDS = (8, 14, 16, 32)  # patch grid sides: 8x8 .. 32x32 tokens per frame
FRAMES = tuple(2 ** i for i in range(3, 9))  # 8 .. 256
HEADS, HEAD_DIM = 12, 64  # ViT-Base, as TimeSformer


def spatial(grid: int, frames: int) -> Attention:
    return Attention(frames, HEADS, grid * grid, grid * grid, HEAD_DIM, "spatial")  # [F, heads, HW, d]


def temporal(grid: int, frames: int) -> Attention:
    return Attention(grid * grid, HEADS, frames, frames, HEAD_DIM, "temporal")  # [HW, heads, F, d]


def crossover(grid: int, limit: int = 1 << 16) -> int | None:
    """Fewest frames at which temporal attention does at least the FLOPs of spatial attention."""
    lo, hi = 1, limit
    if temporal(grid, hi).flops < spatial(grid, hi).flops:
        return None
    while lo < hi:  # temporal grows as F^2, spatial as F: one crossing
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if temporal(grid, mid).flops >= spatial(grid, mid).flops else (mid + 1, hi)
    return lo


def make_a_video(device: str) -> list[dict]:
    p = build("make-a-video")
    rows = []
    for variant in ("spatial", "temporal"):
        calls = flops = 0
        seconds = dict.fromkeys(ATTENTIONS, 0.0)
        for stage in p.stages:
            ops = [op for op in stage.graph().attention_ops if op.shape.variant == variant]
            calls += stage.calls * len(ops)
            flops += stage.calls * sum(op.flops for op in ops)
            for a in ATTENTIONS:
                seconds[a] += stage.calls * sum(model(device, a).op_time(op) for op in ops)
        rows.append({"variant": variant, "calls": calls, "flops": flops,
                     "baseline_s": seconds["baseline"], "flash_s": seconds["flash"]})
    return rows


def run(device: str, out: Path) -> Result:
    mav = make_a_video(device)
    rows = [{"grid": f"{g}x{g}", "tokens_per_frame": g * g, "frames": f,
             "spatial_flops": Op("s", spatial(g, f), "fp16").flops, "temporal_flops": Op("t", temporal(g, f), "fp16").flops}
            for g in GRIDS for f in FRAMES]
    cross = [{"grid": f"{g}x{g}", "tokens_per_frame": g * g, "crossover_frames": crossover(g)} for g in GRIDS]
    csvs = [write_csv(out / f"{NAME}-make-a-video.csv", MAV_COLUMNS, mav),
            write_csv(out / f"{NAME}.csv", COLUMNS, rows),
            write_csv(out / f"{NAME}-crossover.csv", CROSS_COLUMNS, cross)]

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(14, 5))
    measures = (("flops", "FLOPs"), ("baseline_s", "time, baseline"), ("flash_s", "time, flash"))
    x = range(len(measures))
    for k, r in enumerate(mav):
        share = [100 * r[key] / sum(m[key] for m in mav) for key, _ in measures]
        a.bar([i + 0.4 * (k - 0.5) for i in x], share, 0.4, label=f"{r['variant']} attention")
    a.set_xticks(list(x), [label for _, label in measures])
    a.set(title=f"Make-A-Video attention per request on {device}", ylabel="share of spatial + temporal (%)")
    a.legend(fontsize=8)
    colors = plt.get_cmap("tab10")
    for i, g in enumerate(GRIDS):
        pts = [r for r in rows if r["tokens_per_frame"] == g * g]
        b.plot(FRAMES, [r["spatial_flops"] for r in pts], "o-", color=colors(i), label=f"spatial, {g}x{g}")
        b.plot(FRAMES, [r["temporal_flops"] for r in pts], "s--", color=colors(i), label=f"temporal, {g}x{g}")
    b.set(xscale="log", yscale="log", xlabel="frames", ylabel="attention FLOPs per layer",
          title=f"Space-time attention ({HEADS} heads x {HEAD_DIM}): spatial vs temporal")
    b.legend(fontsize=7, ncol=2)
    pngs = [save(fig, out / f"{NAME}.png")]

    s, t = mav
    finding = (f"In Make-A-Video temporal attention does {t['flops'] / s['flops']:.2f}x the FLOPs of spatial "
               f"attention but takes {t['flash_s'] / s['flash_s']:.2f}x its time with flash attention "
               f"({t['baseline_s'] / s['baseline_s']:.2f}x with baseline); in the space-time benchmark temporal "
               f"attention overtakes spatial at "
               + ", ".join(f"{c['crossover_frames']} frames ({c['grid']})" for c in cross) + ".")
    table = markdown_table(CROSS_COLUMNS, cross)
    return Result(NAME, TITLE, finding, csvs, pngs, table)
