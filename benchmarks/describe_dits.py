"""Benchmark: how long `describe NAME --device GPU` takes for each diffusion transformer on each catalog GPU.

Run: python benchmarks/describe_dits.py [--runs 3] [--runtime eager|cuda-graphs] [--devices ...] [--workloads ...]
Times in this process what the command does after its imports: build the pipeline, load the device's cost
model, cost the report and render its text (`emulator.describe.report`, `format_text`), each run from scratch,
and prints the median per workload and device. The interpreter's start and the command's imports, timed once
in a fresh interpreter, are added for the estimated wall time of the command; the slowest pair is then timed
as the command itself. The budget is LIMIT_S per command on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

LIMIT_S = 2.0
DITS = ["flux1-dev", "flux1-schnell", "sd3.5-large", "sd3.5-medium", "pixart-sigma",
        "cogvideox-5b", "hunyuanvideo", "wan2.1-t2v-1.3b", "wan2.1-t2v-14b", "ltx-video"]
STARTUP = ("import time; t = time.perf_counter(); import workloads, emulator.cli, emulator.cost, emulator.describe; "
           "print(time.perf_counter() - t)")


def gpus() -> list[str]:
    """The catalog's devices that are GPUs (the CPU profile is for fp32 reduced sizes)."""
    from emulator.devices import catalog

    return [name for name in catalog() if name != "cpu"]


def describe_once(name: str, device: str, runtime_name: str) -> float:
    """Seconds of one describe after the imports: build, cost model, report, text."""
    from emulator.cost import cost_model, runtime
    from emulator.cost.costing import cost_source
    from emulator.describe import check_work, format_text, report
    from workloads import build

    start = time.perf_counter()
    pipeline = build(name)
    run_as = runtime(runtime_name)
    check_work(pipeline, 5e7)
    model = cost_model(device, "default", False)
    run_as.check(model)
    format_text(report(pipeline, model, cost_source(device, False), run_as))
    return time.perf_counter() - start


def startup_s(runs: int) -> float:
    """Median seconds of a fresh interpreter's start plus the describe command's imports."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", STARTUP], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def command_s(name: str, device: str, runtime_name: str, runs: int) -> float:
    """Median wall seconds of `python -m emulator describe NAME --device DEVICE --runtime R`."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "emulator", "describe", name, "--device", device,
                        "--runtime", runtime_name], capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def table(workloads: list[str], devices: list[str], runtime_name: str, runs: int) -> dict:
    """(workload, device) -> median seconds in process."""
    out = {}
    for name in workloads:
        for device in devices:
            out[name, device] = statistics.median(describe_once(name, device, runtime_name) for _ in range(runs))
    return out


def print_table(times: dict, workloads: list[str], devices: list[str], startup: float) -> None:
    width = max(len(w) for w in workloads)
    print(f"{'workload':{width}s}  " + "  ".join(f"{d[:10]:>10s}" for d in devices))
    for name in workloads:
        print(f"{name:{width}s}  " + "  ".join(f"{times[name, d]:10.3f}" for d in devices))
    (name, device), worst = max(times.items(), key=lambda kv: kv[1])
    print(f"\nseconds in process (build, cost model, report, text), median; startup and imports {startup:.3f} s")
    print(f"slowest: {name} on {device}, {worst:.3f} s + startup = {worst + startup:.3f} s estimated "
          f"(limit {LIMIT_S} s)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Time describe of each DiT on each catalog GPU.")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--runtime", choices=("eager", "cuda-graphs"), default="eager")
    p.add_argument("--devices", nargs="+", help="default: every catalog GPU")
    p.add_argument("--workloads", nargs="+", default=DITS)
    args = p.parse_args(argv)
    devices = args.devices or gpus()
    startup = startup_s(args.runs)
    times = table(args.workloads, devices, args.runtime, args.runs)
    print_table(times, args.workloads, devices, startup)
    (name, device), _ = max(times.items(), key=lambda kv: kv[1])
    wall = command_s(name, device, args.runtime, args.runs)
    print(f"the command itself, {name} on {device}: median {wall:.3f} s wall")
    return 0 if wall <= LIMIT_S else 1


if __name__ == "__main__":
    sys.exit(main())
