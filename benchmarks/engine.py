"""Benchmark of the engine (not a test): simulated step events per second, and a large cluster.

    python benchmarks/engine.py [--hours H] [--devices N] [--rate R]

1. Step events per second: SD v1.5 512x512 traffic on 8 A100s under step-batch,
   fcfs, pods, gang and gang-adaptive, outputs streamed to a temporary directory.
2. One hour of SD v1.5 traffic at 100 requests/s on 64 A100s (continuous
   batching), with wall time and peak resident memory of the process.
3. One hour of mixed image-DiT (FLUX.1-schnell) and video-DiT (Wan 2.1 1.3B)
   traffic on 8 nodes x 8 H100s under gang-adaptive (gangs of 1 to 8 GPUs)
   and gang (the videos' fixed plan), with wall time.
A step event is one call of a stage for a batch (one denoising step, one
decode step, one encoder or decoder pass).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from emulator.engine.scenario import scenario_from_data
from emulator.engine.simulate import Context, simulate_policy


def sd_scenario(devices: int, rate: float, horizon_s: float, policies: list[dict]) -> dict:
    return {
        "name": "bench", "horizon_s": horizon_s, "drain": False,
        "cluster": {"devices": devices, "router": "least-loaded"},
        "traffic": [{"name": "sd-512", "workload": "stable-diffusion", "knobs": {"image_size": 512},
                     "arrival": {"process": "poisson", "rate_per_s": rate}}],
        "policies": policies,
        "output": {"timeseries_resolution_s": 1.0},
    }


def timed(data: dict, repeats: int = 1) -> list[tuple[str, int, list[float], dict]]:
    """Per policy: step events, wall seconds of each run (the first builds and costs the graphs), summary."""
    s = scenario_from_data(data)
    ctx = Context(s)  # pipelines and cost models; graphs are built and costed during the first run
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for p in s.policies:
            walls = []
            for i in range(repeats):
                start = time.perf_counter()
                summary = simulate_policy(ctx, p, Path(tmp) / f"{p.name}-{i}", s.seed)
                walls.append(time.perf_counter() - start)
            out.append((p.name, summary["step_events"], walls, summary))
    return out


def reference_s() -> float:
    """Seconds of a fixed pure-Python loop: this machine's speed now (shared VMs drift by tens of %)."""
    start = time.perf_counter()
    x = 0
    for i in range(5_000_000):
        x += i
    return time.perf_counter() - start


def main() -> None:
    a = argparse.ArgumentParser()
    a.add_argument("--hours", type=float, default=1.0)
    a.add_argument("--devices", type=int, default=64)
    a.add_argument("--rate", type=float, default=100.0)
    a.add_argument("--skip-large", action="store_true")
    a.add_argument("--only-gangs", action="store_true", help="run part 3 only")
    args = a.parse_args()

    print(f"reference loop: {reference_s():.3f} s (lower is a faster machine)")
    if args.only_gangs:
        large_gangs(args)
        print(f"reference loop: {reference_s():.3f} s")
        return
    print("1. step events per second (SD v1.5 512, 8 A100s, 10 req/s, 300 s simulated)")
    policies = [{"policy": "step-batch", "max_batch": 16}, {"policy": "fcfs"},
                {"policy": "pods", "pod_size": 2, "stagger": 0.5}, {"policy": "gang"}, {"policy": "gang-adaptive"}]
    for name, events, (cold, warm), s in timed(sd_scenario(8, 10.0, 300.0, policies), repeats=2):
        print(f"   {name:12s} {events:8d} step events ({s['device_calls']} device calls): "
              f"{events / warm:8.0f} per s; first run, costing its batch sizes, {events / cold:8.0f} per s")

    if args.skip_large:
        return
    large_sd(args)
    large_gangs(args)
    print(f"reference loop: {reference_s():.3f} s")


def dit_gang_scenario(nodes: int, horizon_s: float) -> dict:
    """FLUX.1-schnell images and Wan 2.1 1.3B videos on nodes x 8 H100s, each policy's gangs of 1 to 8."""
    return {
        "name": "bench-gangs", "device": "h100-sxm", "runtime": "cuda-graphs", "horizon_s": horizon_s,
        "drain": False, "cluster": {"nodes": nodes, "gpus_per_node": 8},
        "traffic": [
            {"name": "flux-schnell", "workload": "flux1-schnell", "knobs": {"height": 1024, "width": 1024},
             "arrival": {"process": "poisson", "rate_per_s": 4.0 * nodes}},
            {"name": "wan-480p", "workload": "wan2.1-t2v-1.3b", "knobs": {"height": 480, "width": 832, "frames": 33},
             "parallel": {"transformer": "cfg=2,ulysses=2"},
             "arrival": {"process": "poisson", "rate_per_s": 0.12 * nodes}},
        ],
        "policies": [{"policy": "gang-adaptive", "tokens_per_gpu": 2048}, {"policy": "gang"}],
        "output": {"timeseries_resolution_s": 1.0},
    }


def large_gangs(args) -> None:
    nodes = max(1, args.devices // 8)
    print(f"3. {args.hours:g} h of FLUX.1-schnell and Wan 2.1 1.3B on {nodes} x 8 H100s (gangs of 1-8)")
    for name, events, (wall,), s in timed(dit_gang_scenario(nodes, 3600 * args.hours)):
        n = s["requests"]
        print(f"   {name:14s} {n['arrived']} arrived, {n['completed']} completed, {n['in_flight']} in flight; "
              f"p50 {s['latency_s']['p50']:.2f} s, p99 {s['latency_s']['p99']:.2f} s; busy {s['device_busy_pct']:.1f}%")
        print(f"   {'':14s} {events} step events ({s['device_calls']} device calls) in {wall:.1f} s wall "
              f"({events / wall:.0f} per s)")


def large_sd(args) -> None:
    print(f"2. {args.hours:g} h of SD v1.5 512 at {args.rate:g} req/s on {args.devices} A100s (step-batch, max 32)")
    data = sd_scenario(args.devices, args.rate, 3600 * args.hours, [{"policy": "step-batch", "max_batch": 32}])
    (_, events, (wall,), s), = timed(data)
    rss_MB = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n = s["requests"]
    print(f"   {n['arrived']} arrived, {n['completed']} completed, {n['in_flight']} in flight; "
          f"p50 {s['latency_s']['p50']:.2f} s, p99 {s['latency_s']['p99']:.2f} s; busy {s['device_busy_pct']:.1f}%")
    print(f"   {events} step events in {wall:.1f} s wall ({events / wall:.0f} per s); peak RSS {rss_MB:.0f} MB")


if __name__ == "__main__":
    main()
