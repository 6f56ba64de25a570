"""pareto.png of a search: cost per request against p99 latency for every simulated point, the front marked.

Each point is one configuration at one device count; those meeting the SLO
are coloured by policy, those missing it grey; the dashed line is the p99
target and the step line the Pareto front of the meeting points (no other
meeting point is both cheaper and faster). Needs matplotlib.
"""

from __future__ import annotations

from pathlib import Path


def plot(outcome, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    policy = {c["index"]: c["policy"] for c in outcome.configs}
    fig, ax = plt.subplots(figsize=(7.5, 5))
    pts = [p for p in outcome.points if p["usd_per_request"] is not None and p["latency_p99_s"] is not None]
    miss = [p for p in pts if not p["meets"]]
    ax.scatter([p["latency_p99_s"] for p in miss], [p["usd_per_request"] for p in miss], s=14, c="0.75",
               label="misses the SLO")
    for name in sorted({policy[p["config"]] for p in pts if p["meets"]}):
        ok = [p for p in pts if p["meets"] and policy[p["config"]] == name]
        ax.scatter([p["latency_p99_s"] for p in ok], [p["usd_per_request"] for p in ok], s=22, label=f"meets: {name}")
    front = sorted((p for p in pts if p.get("pareto")), key=lambda p: p["latency_p99_s"])
    if front:
        ax.step([p["latency_p99_s"] for p in front], [p["usd_per_request"] for p in front], where="post", c="k",
                lw=1, label="Pareto front")
    ax.axvline(outcome.study.slo.latency_p99_s, ls="--", c="tab:red", lw=1, label="p99 target")
    ax.set(xscale="log", yscale="log", xlabel="p99 latency (s)", ylabel="cost per completed request (USD)",
           title=f"{outcome.study.name}: {outcome.simulations} of {outcome.grid_size} grid simulations run")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    path = out / "pareto.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
