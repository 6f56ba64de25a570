"""Plots of a sweep's table: throughput against p99 latency with the Pareto front, and a heatmap of two axes.

A policy that axes vary (`policies[1].pod_size`) is labelled by its kind and the values those axes give
it (`pods: pod_size=4, stagger=0`), not by the base policy's name, which names values the sweep replaced.
Which table policy an axis index means comes from `sweep-spec.json` beside the table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

POLICY_AXIS = re.compile(r"policies\[(\d+)\]\.(.+)")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both: higher throughput and lower latency."""
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], points[i][1]))
    front, best = [], float("inf")
    for i in order:
        if points[i][1] < best:
            front.append(i)
            best = points[i][1]
    return front


def read_spec(out: Path) -> dict | None:
    """The resolved sweep specification the table was written under, when it is beside it."""
    try:
        spec = json.loads((out / "sweep-spec.json").read_text()).get("spec")
    except (OSError, ValueError, AttributeError):
        return None
    return spec if isinstance(spec, dict) else None


def swept_axes(table) -> list[str]:
    """The axis columns (between `seed` and `policy`) that take more than one value in the table."""
    cols = list(table.columns)
    axes = cols[cols.index("seed") + 1:cols.index("policy")] if {"seed", "policy"} <= set(cols) else []
    return [a for a in axes if table[a].nunique(dropna=False) > 1]


def policy_axes(spec: dict | None, swept: list[str]) -> dict[str, tuple[int, str, list[tuple[str, str]]]]:
    """Policy name -> (its index, its kind, [(axis, key)...]) for each policy a swept axis sets."""
    policies = (spec or {}).get("base", {}).get("policies") or []
    found = {}
    for axis in swept:
        m = POLICY_AXIS.fullmatch(axis)
        if not m or int(m.group(1)) >= len(policies) or not isinstance(policies[int(m.group(1))], dict):
            continue
        i, policy = int(m.group(1)), policies[int(m.group(1))]
        name = str(policy.get("name", policy.get("policy")))
        found.setdefault(name, (i, str(policy.get("policy", name)), []))[2].append((axis, m.group(2)))
    return found


def value_text(value) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 30 else text[:27] + "..."


def point_labels(table, spec: dict | None) -> list[str]:
    """Each row's legend label: its policy, by the swept values that set it where axes set it."""
    swept = swept_axes(table)
    targets = policy_axes(spec, swept)
    unmapped = [(a, a) for a in swept if POLICY_AXIS.fullmatch(a)] if spec is None else []
    labels = []
    for row in table.to_dict("records"):
        index, kind, axes = targets.get(row["policy"], (None, row["policy"], unmapped))
        values = ", ".join(f"{key}={value_text(row[axis])}" for axis, key in axes)
        labels.append(f"{kind}: {values}" if values else str(row["policy"]))
    return disambiguate(labels, list(table["policy"]), targets)


def disambiguate(labels: list[str], policies: list[str], targets: dict) -> list[str]:
    """Two policies of one kind given the same values keep separate labels: `policies[i]` in front."""
    owners = {}
    for label, policy in zip(labels, policies):
        owners.setdefault(label, set()).add(policy)
    return [f"policies[{targets[p][0]}] {label}" if len(owners[label]) > 1 and p in targets else label
            for label, p in zip(labels, policies)]


def panel_title(policy: str, targets: dict) -> str:
    if policy not in targets:
        return policy
    _, kind, axes = targets[policy]
    return f"{kind} ({', '.join(key for _, key in axes)} swept)"


def constant_value(values: np.ndarray) -> float | None:
    """The one value of a grid whose every finite cell is the same, else None."""
    finite = values[np.isfinite(values)]
    if finite.size and np.allclose(finite, finite[0], rtol=1e-9, atol=0.0):
        return float(finite[0])
    return None


def plot(table, out: Path, x_axis: str | None = None, y_axis: str | None = None,
         metric: str = "latency_p99_s") -> list[Path]:
    """table: the sweep's DataFrame. Writes pareto.png and, given two axes, heatmap.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = table[table["error"] == ""].dropna(subset=["throughput_per_s", "latency_p99_s"])
    ok = ok.sort_values("policy", kind="stable")
    spec = read_spec(out)
    paths = [plot_pareto(plt, ok, spec, out / "pareto.png")]
    if x_axis and y_axis and metric in ok:
        targets = policy_axes(spec, swept_axes(ok))
        paths.append(plot_heatmap(plt, ok, targets, x_axis, y_axis, metric, out / "heatmap.png"))
    return paths


def plot_pareto(plt, ok, spec: dict | None, path: Path) -> Path:
    """Throughput against p99 latency, one colour per label, the Pareto front over every point."""
    fig, ax = plt.subplots(figsize=(8, 5.5))
    ok = ok.assign(label=point_labels(ok, spec))
    for label, group in ok.groupby("label", sort=False):
        ax.scatter(group["throughput_per_s"], group["latency_p99_s"], label=label, s=18, alpha=0.7)
    pts = list(zip(ok["throughput_per_s"], ok["latency_p99_s"]))
    front = sorted((pts[i] for i in pareto_front(pts)), key=lambda p: p[0])
    if front:
        ax.plot([p[0] for p in front], [p[1] for p in front], "k--", marker="D", mfc="none", ms=9, lw=1.2,
                label="Pareto front")
    ax.set(xlabel="throughput (completed requests/s)", ylabel="p99 latency (s)", yscale="log",
           title="Sweep: throughput vs p99 latency (every run and policy)")
    if len(ok):
        policy_swept = {a for a in swept_axes(ok) if POLICY_AXIS.fullmatch(a)}
        within = [a for a in swept_axes(ok) if a not in policy_swept] + ["seed"] * (ok["seed"].nunique() > 1)
        ax.legend(fontsize=7, title=f"within a label: {', '.join(within)} vary" if within else None,
                  title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    else:
        ax.text(0.5, 0.5, "no run succeeded", transform=ax.transAxes, ha="center", va="center")
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_heatmap(plt, ok, targets: dict, x_axis: str, y_axis: str, metric: str, path: Path) -> Path:
    """One panel per policy: the metric's mean over seeds and other axes; a constant panel says so instead
    of a colour bar."""
    policies = sorted(ok["policy"].unique())
    fig, axes = plt.subplots(1, max(len(policies), 1), figsize=(4.5 * max(len(policies), 1), 4), squeeze=False)
    for ax, policy in zip(axes[0], policies):
        grid = ok[ok["policy"] == policy].pivot_table(index=y_axis, columns=x_axis, values=metric, aggfunc="mean")
        values = grid.values.astype(float)
        im = ax.imshow(values, origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns], rotation=30, ha="right")
        ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
        ax.set(xlabel=x_axis, ylabel=y_axis,
               title=f"{panel_title(policy, targets)}: {metric}\n(mean over seeds and other axes)")
        constant = constant_value(values)
        if constant is None:
            fig.colorbar(im, ax=ax)
        else:
            ax.text(0.5, 0.5, f"constant: {constant:.4g}", transform=ax.transAxes, ha="center", va="center",
                    bbox={"facecolor": "white", "alpha": 0.8})
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path
