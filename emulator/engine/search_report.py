"""A search's outcome as files and text: configs.csv, points.csv, search.json and the ranked table.

`configs.csv` has one row per configuration (policy, axis values, lone-request
lower bound, status, smallest meeting count and its metrics), meeting ones
first by cost per request; `points.csv` one row per simulated (configuration,
count) with whether it met the SLO and lies on the Pareto front;
`search.json` the counts of simulations against the full grid, the best
configuration and the highest rate found.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from emulator.engine.sweep import plain, short, write_atomically

CONFIG_TAIL = ("lone_request_s", "status", "count", "latency_p99_s", "ttft_p99_s", "tpot_p99_s", "throughput_per_s",
               "cost_usd", "usd_per_request", "usd_per_image", "usd_per_video_s")
POINT_COLUMNS = ("config", "count", "meets", "pareto", "error", "latency_p99_s", "ttft_p99_s", "tpot_p99_s",
                 "throughput_per_s", "device_hours", "cost_usd", "usd_per_request", "usd_per_image", "usd_per_video_s")


def config_columns(outcome) -> list[str]:
    return ["index", "policy", *outcome.study.axes, *CONFIG_TAIL]


def write_csv(path: Path, columns, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        w.writerows({k: plain(v) if isinstance(v, (list, tuple, dict)) else v for k, v in r.items()} for r in rows)
    return path


def write(outcome, out: Path) -> list[Path]:
    """configs.csv, points.csv and search.json in `out` (created)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_csv(out / "configs.csv", config_columns(outcome), outcome.configs),
             write_csv(out / "points.csv", POINT_COLUMNS, outcome.points)]
    summary = {"study": outcome.study.name, "slo": plain(vars(outcome.study.slo)),
               "simulations": outcome.simulations, "full_grid": outcome.grid_size,
               "configurations": len(outcome.configs),
               "pruned_by_lower_bound": sum(c["status"].startswith("pruned") for c in outcome.configs),
               "meeting": sum(c["status"] == "meets" for c in outcome.configs),
               "best": plain(outcome.best), "max_rate": plain(outcome.max_rate)}
    write_atomically(out / "search.json", json.dumps(summary, indent=1) + "\n")
    return [*paths, out / "search.json"]


def cell(value, fmt: str = "{:.3g}") -> str:
    if value is None:
        return "-"
    return fmt.format(value) if isinstance(value, float) else short(value, 40)


def table(outcome, limit: int = 20) -> str:
    """The configurations ranked (meeting ones by cost per request), as aligned text."""
    head = ["policy", *outcome.study.axes, "N", "p99 s", "USD/req", "USD/image", "USD/video-s", "status"]
    rows = [head] + [[cell(c["policy"]), *(cell(c[a]) for a in outcome.study.axes), cell(c["count"]),
                      cell(c["latency_p99_s"]), cell(c["usd_per_request"]), cell(c["usd_per_image"]),
                      cell(c["usd_per_video_s"]), c["status"]] for c in outcome.configs[:limit]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(x.ljust(w) for x, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0]), *lines[1:]])
