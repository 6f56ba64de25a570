"""breakdown: where each model's inference time goes, per operator category, baseline vs flash attention.

Seconds per category are the kernel times of one request (every stage call);
`host idle` is the time the device waits for the host's dispatch, so the
categories sum to the request time. Both bars of a model are normalized to its
baseline-attention time. The table gives the end-to-end speedup of flash
attention and the speedup of the attention kernels alone.
"""

from __future__ import annotations

from pathlib import Path

from emulator.ops import CATEGORIES
from experiments.common import (
    ATTENTIONS,
    Result,
    markdown_table,
    model,
    pyplot,
    request_time,
    save,
    write_csv,
)
from workloads import STUDY_SUITE, build

NAME = "breakdown"
TITLE = "Operator time breakdown, baseline vs flash attention"
COLUMNS = ("workload", "attention", "category", "seconds", "share", "share_of_baseline")
SPEEDUP_COLUMNS = ("workload", "baseline_s", "flash_s", "end_to_end_speedup", "attention_baseline_s",
                   "attention_flash_s", "attention_speedup")
PARTS = (*CATEGORIES, "host idle")


def run(device: str, out: Path) -> Result:
    rows, speedups = [], []
    for name in STUDY_SUITE:
        p = build(name)
        t = {a: request_time(p, model(device, a)) for a in ATTENTIONS}
        base = t["baseline"].seconds
        for a in ATTENTIONS:
            parts = dict(t[a].by_category_s, **{"host idle": t[a].host_idle_s})
            for c in PARTS:
                s = parts.get(c, 0.0)
                rows.append({"workload": name, "attention": a, "category": c, "seconds": s,
                             "share": s / t[a].seconds, "share_of_baseline": s / base})
        attn = {a: t[a].by_category_s.get("Attention", 0.0) for a in ATTENTIONS}
        speedups.append({"workload": name, "baseline_s": base, "flash_s": t["flash"].seconds,
                         "end_to_end_speedup": base / t["flash"].seconds,
                         "attention_baseline_s": attn["baseline"], "attention_flash_s": attn["flash"],
                         "attention_speedup": attn["baseline"] / attn["flash"] if attn["flash"] else None})
    csvs = [write_csv(out / f"{NAME}.csv", COLUMNS, rows),
            write_csv(out / f"{NAME}-speedup.csv", SPEEDUP_COLUMNS, speedups)]

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(13, 5.5))
    colors = plt.get_cmap("tab20")
    names = list(STUDY_SUITE)
    for j, a in enumerate(ATTENTIONS):
        bottom = [0.0] * len(names)
        xs = [i + (j - 0.5) * 0.4 for i in range(len(names))]
        for k, c in enumerate(PARTS):
            h = [next(r["share_of_baseline"] for r in rows if r["workload"] == n and r["attention"] == a
                      and r["category"] == c) for n in names]
            ax.bar(xs, h, 0.38, bottom=bottom, color=colors(k), edgecolor="white", lw=0.3,
                   label=c if j == 0 else None, hatch="//" if a == "flash" else None)
            bottom = [b + x for b, x in zip(bottom, h)]
    ax.set_xticks(range(len(names)), names, fontsize=9, rotation=20)
    ax.set(ylabel="time / baseline-attention time",
           title=f"Operator breakdown of one request on {device}: left bar baseline attention, right (hatched) flash")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    pngs = [save(fig, out / f"{NAME}.png")]

    best = max(speedups, key=lambda r: r["end_to_end_speedup"])
    least = min(speedups, key=lambda r: r["end_to_end_speedup"])
    finding = (f"Flash attention speeds up {best['workload']} end to end by {best['end_to_end_speedup']:.2f}x "
               f"(its attention kernels by {best['attention_speedup']:.1f}x) but {least['workload']} only by "
               f"{least['end_to_end_speedup']:.2f}x, where attention is a small share of the time.")
    table = markdown_table(SPEEDUP_COLUMNS, speedups, {c: "{:.3g}" for c in SPEEDUP_COLUMNS[1:]})
    return Result(NAME, TITLE, finding, csvs, pngs, table)
