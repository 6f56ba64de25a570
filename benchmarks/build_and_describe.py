"""Benchmark: how long building the suite's graphs and `describe` take on this machine.

Run: python benchmarks/build_and_describe.py
Prints the median of several runs of (1) building every workload's pipeline at
default knobs and the graph of every stage, in a fresh interpreter, imports
excluded, and (2) `python -m emulator describe stable-diffusion --json` wall
time, interpreter start included.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

BUILD_ALL = """
import time
t0 = time.perf_counter()
import workloads
t1 = time.perf_counter()
for name in workloads.WORKLOADS:
    for stage in workloads.build(name).stages:
        stage.graph()
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""


def main(runs: int = 5) -> None:
    imports, builds, describes = [], [], []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", BUILD_ALL], capture_output=True, text=True, check=True)
        i, b = map(float, out.stdout.split())
        imports.append(i)
        builds.append(b)
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "emulator", "describe", "stable-diffusion", "--json"],
                       capture_output=True, check=True)
        describes.append(time.perf_counter() - t)
    print(f"import workloads (networkx included): median {statistics.median(imports):.3f} s")
    print(f"build every suite graph at default knobs: median {statistics.median(builds):.3f} s "
          f"(min {min(builds):.3f}, max {max(builds):.3f}) over {runs} runs")
    print(f"describe stable-diffusion --json, wall with interpreter start: median "
          f"{statistics.median(describes):.3f} s (max {max(describes):.3f})")


if __name__ == "__main__":
    main()
