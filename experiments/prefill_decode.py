"""prefill-decode: the speedup of flash over baseline attention as a function of query and key length.

A grid of attention shapes (16 heads of 64 at batch 1, query lengths 1 to 16k
and key lengths 64 to 16k, q <= kv as in prefill and decode) is costed with both
implementations on the device; every attention call of every model (one call of
each stage at default knobs, decode at its first and last KV length) is marked
on the map. Diffusion UNets attend like a prefill (q = kv, long); Parti and
LLaMA decode like decode (q = 1).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from emulator.ops import Op
from emulator.shapes import Attention
from experiments.common import Result, model, pyplot, save, write_csv
from workloads import STUDY_SUITE, build

NAME = "prefill-decode"
TITLE = "Flash attention speedup by query and key length"
COLUMNS = ("q_len", "kv_len", "baseline_s", "flash_s", "speedup")
CALL_COLUMNS = ("workload", "stage", "variant", "q_len", "kv_len", "count")
Q_LENS = tuple(2 ** i for i in range(15))  # 1 .. 16384
KV_LENS = tuple(2 ** i for i in range(6, 15))  # 64 .. 16384
HEADS, HEAD_DIM = 16, 64


def model_calls() -> list[dict]:
    rows = []
    for name in STUDY_SUITE:
        for stage in build(name).stages:
            counts = Counter()
            for call in {0, stage.calls - 1}:
                for op in stage.graph(call=call).attention_ops:
                    counts[(op.shape.variant, op.shape.q_len, op.shape.kv_len)] += 1
            rows += [{"workload": name, "stage": stage.name, "variant": v, "q_len": q, "kv_len": kv, "count": n}
                     for (v, q, kv), n in counts.items()]
    return rows


def run(device: str, out: Path) -> Result:
    base, flash = model(device, "baseline"), model(device, "flash")
    rows = []
    for q in Q_LENS:
        for kv in KV_LENS:
            if q > kv:
                continue
            op = Op("a", Attention(1, HEADS, q, kv, HEAD_DIM), "fp16")
            b, f = base.op_time(op), flash.op_time(op)
            rows.append({"q_len": q, "kv_len": kv, "baseline_s": b, "flash_s": f, "speedup": b / f})
    calls = model_calls()
    csvs = [write_csv(out / f"{NAME}.csv", COLUMNS, rows), write_csv(out / f"{NAME}-calls.csv", CALL_COLUMNS, calls)]

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 6.5))
    grid = np.full((len(Q_LENS), len(KV_LENS)), np.nan)
    for r in rows:
        grid[Q_LENS.index(r["q_len"]), KV_LENS.index(r["kv_len"])] = r["speedup"]
    im = ax.pcolormesh(np.log2(KV_LENS + (2 * KV_LENS[-1],)) - 0.5, np.log2(Q_LENS + (2 * Q_LENS[-1],)) - 0.5,
                       grid, cmap="viridis", shading="flat")
    fig.colorbar(im, ax=ax, label="speedup of flash over baseline (x)")
    markers = "os^vD<>p"
    for i, name in enumerate(STUDY_SUITE):
        pts = [c for c in calls if c["workload"] == name]
        ax.scatter([np.log2(c["kv_len"]) for c in pts], [np.log2(c["q_len"]) for c in pts], marker=markers[i],
                   facecolors="none", edgecolors="white", s=40, lw=1.2)
        ax.scatter([], [], marker=markers[i], facecolors="none", edgecolors="k", label=name)
    ax.set(xlabel="key length (log2 tokens)", ylabel="query length (log2 tokens)",
           title=f"Attention speedup of flash over baseline on {device} ({HEADS} heads x {HEAD_DIM}, batch 1)")
    ax.legend(fontsize=7, loc="upper left", title="calls of", title_fontsize=7)
    pngs = [save(fig, out / f"{NAME}.png")]

    prefill = max((r for r in rows if r["q_len"] == r["kv_len"]), key=lambda r: r["q_len"])
    decode = max((r for r in rows if r["q_len"] == 1), key=lambda r: r["kv_len"])
    decoders = sorted({c["workload"] for c in calls if c["q_len"] == 1})
    long_prefill = sorted({c["workload"] for c in calls if c["q_len"] == c["kv_len"] >= 1024})
    finding = (f"Flash attention is {prefill['speedup']:.1f}x faster than baseline for a {prefill['q_len']}-token "
               f"prefill-like call but {decode['speedup']:.1f}x for a one-token decode call over "
               f"{decode['kv_len']} keys; one-token calls come from {', '.join(decoders)}, long q = kv calls "
               f"(1024 tokens or more) from {', '.join(long_prefill)}.")
    return Result(NAME, TITLE, finding, csvs, pngs)
