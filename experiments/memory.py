"""memory: the similarity-matrix memory of Stable Diffusion against the latent side L.

Three counts per output size: the study's closed formula verbatim (batch 1,
one head, one self- and one cross-attention per level visit), the same sum
generalized to the UNet's real heads and transformer depth (the stage's
`similarity_formula`), and the sum over the attention ops of the built graph.
The exponent of L is fitted on the graph sum over the largest sizes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emulator.similarity import digest_unet_bytes
from experiments.common import Result, pyplot, save, write_csv
from workloads import build

NAME = "memory"
TITLE = "Similarity-matrix memory of Stable Diffusion vs latent side"
COLUMNS = ("image_size", "latent_side", "digest_formula_bytes", "formula_bytes", "graph_bytes")
SIZES = tuple(range(64, 1025, 64))
DEPTH = 3  # SD v1.5 attends at three of its four levels
TEXT_TOKENS = 77


def fitted_exponent(rows: list[dict], key: str = "graph_bytes", last: int = 4) -> float:
    top = rows[-last:]
    return float(np.polyfit(np.log([r["latent_side"] for r in top]), np.log([r[key] for r in top]), 1)[0])


def run(device: str, out: Path) -> Result:
    rows = []
    for size in SIZES:
        unet = build("stable-diffusion", image_size=size, guidance=False).stage("unet")
        side = size // 8
        digest = digest_unet_bytes(side, side, TEXT_TOKENS, DEPTH) if side % 2 ** DEPTH == 0 else None
        rows.append({"image_size": size, "latent_side": side, "digest_formula_bytes": digest,
                     "formula_bytes": unet.similarity_formula(1), "graph_bytes": unet.graph(1).totals.similarity_bytes})
    csv = write_csv(out / f"{NAME}.csv", COLUMNS, rows)
    exponent = fitted_exponent(rows)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ls = [r["latent_side"] for r in rows]
    ax.plot(ls, [r["graph_bytes"] / 2**20 for r in rows], "o-", label="sum over the graph's attention ops")
    ax.plot(ls, [r["formula_bytes"] / 2**20 for r in rows], "x--", label="closed formula, real heads and depth")
    d = [r for r in rows if r["digest_formula_bytes"]]
    ax.plot([r["latent_side"] for r in d], [r["digest_formula_bytes"] / 2**20 for r in d], "s:",
            label="study's formula (1 head, 1 self + 1 cross per level)")
    ax.set(xscale="log", yscale="log", xlabel="latent side L (positions)", ylabel="similarity-matrix memory (MiB)",
           title=f"SD v1.5 similarity matrices per UNet pass (batch 1, fp16); fitted exponent of L: {exponent:.3f}")
    ax.legend(fontsize=8)
    png = save(fig, out / f"{NAME}.png")
    agree = all(r["formula_bytes"] == r["graph_bytes"] for r in rows)
    finding = (f"The similarity-matrix memory of one SD UNet pass grows as L^{exponent:.2f} over the largest "
               f"latents; the closed formula with the UNet's real heads and depth "
               f"{'equals' if agree else 'differs from'} the sum over the graph at every size.")
    return Result(NAME, TITLE, finding, [csv], [png])
