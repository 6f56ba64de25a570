"""`all`: every experiment into one directory, and report.md with each figure, table and finding."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from experiments.common import Result


def write_report(results: list[Result], device: str, out: Path, seconds: float) -> Path:
    intro = ("Every number below comes from the emulator's graphs and cost models "
             f"(`python -m experiments all --device {device}`, {seconds:.0f} s). Each section is one experiment: "
             "its figures, its CSVs, and one sentence computed from its numbers.")
    lines = [f"# The characterization study, emulated on {device}", "", intro, ""]
    for r in results:
        lines += [f"## {r.title} (`{r.name}`)", ""]
        lines += [f"![{r.name}]({p.name})" for p in r.pngs] + [""]
        if r.table:
            lines += [r.table, ""]
        lines += [f"**Finding.** {r.finding}", "", "Data: " + ", ".join(f"[{p.name}]({p.name})" for p in r.csvs), ""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def run_all(experiments: dict, device: str, out: Path) -> list[Result]:
    started = time.perf_counter()
    results = []
    for i, (name, module) in enumerate(experiments.items(), start=1):
        t = time.perf_counter()
        print(f"[{i}/{len(experiments)}] {name} ...", end="", file=sys.stderr, flush=True)
        results.append(module.run(device, out))
        print(f" {time.perf_counter() - t:.1f} s", file=sys.stderr)
    write_report(results, device, out, time.perf_counter() - started)
    return results
