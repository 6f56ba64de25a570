"""What every experiment shares: cost models by attention implementation, request times, files, figures.

An experiment is a module with `NAME`, `TITLE` and `run(device, out) -> Result`;
it writes tidy CSVs (one row per observation, units in the column names) and
PNGs into `out`, and states its finding in one sentence computed from its own
numbers. Only the public API of `emulator` and `workloads` is used.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from emulator.cost import CostModel, cost_model, stage_time
from emulator.cost.timeline import CallTime, sum_calls
from emulator.pipeline import Pipeline

ATTENTIONS = ("baseline", "flash")


@dataclass
class Result:
    name: str
    title: str
    finding: str  # one sentence, computed from the numbers
    csvs: list[Path] = field(default_factory=list)
    pngs: list[Path] = field(default_factory=list)
    table: str = ""  # a markdown table for the report, where one reads better than a figure


@cache
def model(device: str, attention: str) -> CostModel:
    return cost_model(device, attention)


def request_time(pipeline: Pipeline, cost: CostModel) -> CallTime:
    """A whole request: every stage's calls, summed (seconds, device seconds, per category)."""
    return sum_calls([stage_time(s, cost)[1] for s in pipeline.stages])


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow({k: row[k] for k in columns})
    return path


def pyplot():
    """matplotlib without a screen."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": 110, "savefig.bbox": "tight", "axes.grid": True, "grid.alpha": 0.3})
    return plt


def save(fig, path: Path) -> Path:
    fig.savefig(path)
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def markdown_table(columns: tuple[str, ...], rows: list[dict], formats: dict | None = None) -> str:
    formats = formats or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in rows:
        cells = [formats.get(c, "{}").format(r[c]) if r[c] is not None else "-" for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
