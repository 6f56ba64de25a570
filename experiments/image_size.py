"""image-size: Stable Diffusion's attention time against its convolution time as the output grows.

One request at output sizes 64 to 1024 pixels, costed on the device with
baseline and with flash attention; seconds are kernel times per request, per
operator category.
"""

from __future__ import annotations

from pathlib import Path

from experiments.common import (
    ATTENTIONS,
    Result,
    model,
    pyplot,
    request_time,
    save,
    write_csv,
)
from workloads import build

NAME = "image-size"
TITLE = "Stable Diffusion attention vs convolution time by image size"
COLUMNS = ("image_size", "attention", "attention_s", "convolution_s", "total_s", "attention_share")
SIZES = (64, 128, 256, 384, 512, 640, 768, 896, 1024)


def run(device: str, out: Path) -> Result:
    rows = []
    for size in SIZES:
        p = build("stable-diffusion", image_size=size)
        for a in ATTENTIONS:
            t = request_time(p, model(device, a))
            attn, conv = t.by_category_s.get("Attention", 0.0), t.by_category_s.get("Convolution", 0.0)
            rows.append({"image_size": size, "attention": a, "attention_s": attn, "convolution_s": conv,
                         "total_s": t.seconds, "attention_share": attn / t.device_s})
    csv = write_csv(out / f"{NAME}.csv", COLUMNS, rows)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for a, style in zip(ATTENTIONS, ("-", "--")):
        pts = [r for r in rows if r["attention"] == a]
        ax.plot(SIZES, [r["attention_s"] for r in pts], "o" + style, color="tab:red", label=f"attention ({a})")
    conv = [r["convolution_s"] for r in rows if r["attention"] == ATTENTIONS[0]]
    ax.plot(SIZES, conv, "s-", color="tab:blue", label="convolution (either attention)")
    ax.set(yscale="log", xlabel="output image side (pixels)", ylabel="kernel seconds per request (log)",
           title=f"Stable Diffusion on {device}: attention vs convolution")
    ax.legend(fontsize=8)
    png = save(fig, out / f"{NAME}.png")

    def crossover(a: str):
        return next((r["image_size"] for r in rows if r["attention"] == a and r["attention_s"] > r["convolution_s"]),
                    None)

    base, flash = crossover("baseline"), crossover("flash")
    big = [r for r in rows if r["image_size"] == SIZES[-1]]
    say = lambda s: f"from {s}x{s}" if s else "at no size up to 1024x1024"
    finding = (f"With baseline attention, attention takes longer than convolution {say(base)}; with flash "
               f"{say(flash)}; at 1024x1024 attention is "
               + " and ".join(f"{100 * r['attention_share']:.0f}% ({r['attention']})" for r in big)
               + " of the kernel time.")
    return Result(NAME, TITLE, finding, [csv], [png])
