"""seqlen: the sequence length of every attention call over one inference period, per model.

One period is one call of the stage that repeats (a UNet pass, a transformer
step), its attention calls in execution order; for autoregressive decode, whose
period is the whole generation, the key length of the first layer's attention
at each step. The second figure is the histogram of Stable Diffusion's
self- and cross-attention query lengths over one UNet pass at output sizes 64
to 1024 pixels.
"""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

from experiments.common import Result, pyplot, save, write_csv
from workloads import STUDY_SUITE, build

NAME = "seqlen"
TITLE = "Attention sequence length over one inference period"
COLUMNS = ("workload", "stage", "index", "variant", "q_len", "kv_len")
HIST_COLUMNS = ("image_size", "variant", "q_len", "count")
SD_SIZES = (64, 128, 256, 512, 768, 1024)


def period(name: str) -> list[dict]:
    p = build(name)
    loop = max(p.stages, key=lambda s: s.calls)
    if loop.kv_growth:
        first = loop.graph().attention_ops[0].name
        return [{"workload": name, "stage": loop.name, "index": c, "variant": op.shape.variant,
                 "q_len": op.shape.q_len, "kv_len": op.shape.kv_len}
                for c in range(loop.calls) for op in (loop.graph(call=c).op(first),)]
    return [{"workload": name, "stage": loop.name, "index": i, "variant": op.shape.variant,
             "q_len": op.shape.q_len, "kv_len": op.shape.kv_len}
            for i, op in enumerate(loop.graph().attention_ops)]


def sd_histogram() -> list[dict]:
    rows = []
    for size in SD_SIZES:
        counts = Counter((op.shape.variant, op.shape.q_len)
                         for op in build("stable-diffusion", image_size=size).stage("unet").graph().attention_ops)
        rows += [{"image_size": size, "variant": v, "q_len": q, "count": n} for (v, q), n in sorted(counts.items())]
    return rows


def run(device: str, out: Path) -> Result:
    rows = [r for name in STUDY_SUITE for r in period(name)]
    hist = sd_histogram()
    csvs = [write_csv(out / f"{NAME}.csv", COLUMNS, rows), write_csv(out / f"{NAME}-sd-histogram.csv",
                                                                     HIST_COLUMNS, hist)]
    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, name in zip(axes.flat, STUDY_SUITE):
        pts = [r for r in rows if r["workload"] == name]
        decode = pts[0]["q_len"] == 1 and len(pts) > 1 and pts[-1]["kv_len"] > pts[0]["kv_len"]
        ys = [r["kv_len"] if decode else r["q_len"] for r in pts]
        ax.plot([r["index"] for r in pts], ys, ".-", ms=3, lw=0.7)
        ax.set(title=f"{name}: {pts[0]['stage']}", yscale="log",
               xlabel="decode step" if decode else "attention call in one pass",
               ylabel="key length (tokens)" if decode else "query length (tokens)")
    fig.suptitle("Attention sequence length over one period of each model")
    fig.tight_layout()
    png1 = save(fig, out / f"{NAME}.png")

    fig, axes = plt.subplots(1, len(SD_SIZES), figsize=(16, 3.6), sharey=True)
    for ax, size in zip(axes, SD_SIZES):
        pts = [r for r in hist if r["image_size"] == size]
        for variant, color in (("self", "tab:blue"), ("cross", "tab:orange")):
            v = [r for r in pts if r["variant"] == variant]
            ax.bar([str(r["q_len"]) for r in v], [r["count"] for r in v], color=color, alpha=0.7, label=variant)
        ax.set(title=f"SD {size}x{size}", xlabel="query length (tokens)")
        ax.tick_params(axis="x", rotation=60)
    axes[0].set_ylabel("attention calls per UNet pass")
    axes[0].legend()
    png2 = save(fig, out / f"{NAME}-sd-histogram.png")

    sd = [r for r in rows if r["workload"] == "stable-diffusion"]
    lengths = sorted({r["q_len"] for r in sd})
    q = [r["q_len"] for r in sd]
    low = q.index(min(q))
    falling = all(a >= b for a, b in itertools.pairwise(q[:low + 1]))
    rising = all(a <= b for a, b in itertools.pairwise(q[low:]))
    shape = ("falling to the middle of the pass and rising again" if falling and rising
             else "not monotone on either side of its minimum")
    sizes = {size: len({r["q_len"] for r in hist if r["image_size"] == size}) for size in SD_SIZES}
    finding = (f"One SD UNet pass at 512x512 makes {len(sd)} attention calls whose query lengths take only "
               f"{len(lengths)} values ({', '.join(map(str, lengths))}), {shape}; at every output size from "
               f"{SD_SIZES[0]} to {SD_SIZES[-1]} there are "
               f"{min(sizes.values()) if min(sizes.values()) == max(sizes.values()) else f'{min(sizes.values())} to {max(sizes.values())}'}"
               f" distinct lengths.")
    return Result(NAME, TITLE, finding, csvs, [png1, png2])
