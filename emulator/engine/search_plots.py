"""pareto.png of a search: cost per request against p99 latency for every simulated point, the front marked.

Each point is one configuration at one device count (the number beside it);
those meeting the SLO are coloured by configuration, those missing it grey; the dashed line is the p99
target and the step line the Pareto front of the meeting points (no other
meeting point is both cheaper and faster). Needs matplotlib.
"""

from __future__ import annotations

from pathlib import Path


def plot(outcome, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = list(outcome.study.axes)
    label = {c["index"]: ", ".join([c["policy"], *(str(c[a]) for a in axes)]) for c in outcome.configs}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    pts = [p for p in outcome.points if p["usd_per_request"] is not None and p["latency_p99_s"] is not None]
    miss = [p for p in pts if not p["meets"]]
    ax.scatter([p["latency_p99_s"] for p in miss], [p["usd_per_request"] for p in miss], s=14, c="0.75",
               label="misses the SLO")
    colors = plt.get_cmap("tab20")
    for k, index in enumerate(sorted({p["config"] for p in pts if p["meets"]})):
        ok = [p for p in pts if p["meets"] and p["config"] == index]
        ax.scatter([p["latency_p99_s"] for p in ok], [p["usd_per_request"] for p in ok], s=22, color=colors(k % 20),
                   label=label[index])
        for p in ok:
            ax.annotate(str(p["count"]), (p["latency_p99_s"], p["usd_per_request"]), fontsize=6, xytext=(3, 2),
                        textcoords="offset points")
    front = sorted((p for p in pts if p.get("pareto")), key=lambda p: p["latency_p99_s"])
    if front:
        ax.step([p["latency_p99_s"] for p in front], [p["usd_per_request"] for p in front], where="post", c="k",
                lw=1, label="Pareto front")
    ax.axvline(outcome.study.slo.latency_p99_s, ls="--", c="tab:red", lw=1, label="p99 target")
    ax.set(xscale="log", yscale="log", xlabel="p99 latency (s)", ylabel="cost per completed request (USD)",
           title=f"{outcome.study.name}: {outcome.simulations} of {outcome.grid_size} grid simulations run")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    path = out / "pareto.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
