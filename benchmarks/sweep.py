"""Benchmark (not a test): a 100-run sweep of 10,000-request SD v1.5 scenarios on this machine.

    python benchmarks/sweep.py [--workers N] [--ray]

Axes: load (5 rates) x max batch (4) x seeds (5) = 100 runs of step-batch on 16 A100s, each run
10,000 requests of SD v1.5 at 512x512. Prints the wall time and the runs per minute.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).parents[1]))

from emulator import sweep

BASE = {
    "name": "bench-sweep", "horizon_s": 3600.0, "drain": True,
    "cluster": {"devices": 16, "router": "least-loaded"},
    "traffic": [{"name": "sd-512", "workload": "stable-diffusion", "knobs": {"image_size": 512},
                 "arrival": {"process": "poisson", "rate_per_s": 20.0}, "max_requests": 10000}],
    "policies": [{"name": "continuous", "policy": "step-batch", "max_batch": 16}],
    "output": {"timeseries_resolution_s": 10.0},
}
SWEEP = {"name": "bench-sweep", "base": "base.yaml",
         "axes": {"traffic[0].arrival.rate_per_s": [10.0, 15.0, 20.0, 25.0, 30.0],
                  "policies[0].max_batch": [8, 16, 32, 64]},
         "seeds": [1, 2, 3, 4, 5]}


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("--workers", type=int)
    a.add_argument("--ray", action="store_true")
    args = a.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "base.yaml").write_text(yaml.safe_dump(BASE))
        (tmp / "sweep.yaml").write_text(yaml.safe_dump(SWEEP))
        start = time.perf_counter()
        table = sweep(tmp / "sweep.yaml", tmp / "out", workers=args.workers, ray="auto" if args.ray else None,
                      progress=True)
        wall = time.perf_counter() - start
    ok = table[table["error"] == ""]
    print(f"{table['run_id'].nunique()} runs ({len(ok)} ok) of {int(ok['arrived'].min())}-{int(ok['arrived'].max())} "
          f"requests in {wall:.1f} s wall ({60 * len(table) / wall:.0f} runs per minute); "
          f"{int(ok['step_events'].sum())} step events")


if __name__ == "__main__":
    main()
