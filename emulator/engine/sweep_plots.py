"""Plots of a sweep's table: throughput against p99 latency with the Pareto front, and a heatmap of two axes."""

from __future__ import annotations

from pathlib import Path


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both: higher throughput and lower latency."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], points[i][1]))
    front, best = [], float("inf")
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def plot(table, out: Path, x_axis: str | None = None, y_axis: str | None = None,
         metric: str = "latency_p99_s") -> list[Path]:
    """table: the sweep's DataFrame. Writes pareto.png and, given two axes, heatmap.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table[table["error"] == ""].dropna(subset=["throughput_per_s", "latency_p99_s"])
    paths = []
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for policy, group in ok.groupby("policy"):
        ax.scatter(group["throughput_per_s"], group["latency_p99_s"], label=policy, s=18, alpha=0.7)
    pts = list(zip(ok["throughput_per_s"], ok["latency_p99_s"]))
    front = sorted((pts[i] for i in pareto_front(pts)), key=lambda p: p[0])
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", marker="D", mfc="none", ms=9, lw=1.2,
                label="Pareto front")
    ax.set(xlabel="throughput (completed requests/s)", ylabel="p99 latency (s)", yscale="log",
           title="Sweep: throughput vs p99 latency (every run and policy)")
    ax.legend(fontsize=7)
    fig.savefig(out / "pareto.png", bbox_inches="tight")
    plt.close(fig)
    paths.append(out / "pareto.png")
    if x_axis and y_axis and metric in ok:
        policies = sorted(ok["policy"].unique())
        fig, axes = plt.subplots(1, len(policies), figsize=(4.5 * len(policies), 4), squeeze=False)
        for ax, policy in zip(axes[0], policies):
            grid = ok[ok["policy"] == policy].pivot_table(index=y_axis, columns=x_axis, values=metric, aggfunc="mean")
            im = ax.imshow(grid.values, origin="lower", aspect="auto", cmap="viridis")
            ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], rotation=30, ha="right")
            ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
            ax.set(xlabel=x_axis, ylabel=y_axis, title=f"{policy}: {metric}\n(mean over seeds and other axes)")
            fig.colorbar(im, ax=ax)
        fig.tight_layout()
        fig.savefig(out / "heatmap.png", bbox_inches="tight")
        plt.close(fig)
        paths.append(out / "heatmap.png")
    return paths
