"""Timing the planned kernels in passes, with a log that lets an interrupted run resume.

Each pass times every kernel once, in its own shuffled order, so that slow
spells of a shared machine fall on different kernels in different passes.
Extra passes (up to `max_passes`) time again the kernels whose pass medians
disagree, and every cheap kernel, whose medians wander most and cost least.
Every measurement is appended to OUT.partial.jsonl as it is taken; a run of
the same device, dtype, torch and process state resumes from it.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from pathlib import Path

from calibration.grid import spec_key
from calibration.plan import buffer_sets, footprint_bytes
from emulator.cost.profile import shape_from_json, shape_to_json

# Pass medians agree when the two nearest their median differ by at most this share of it.
SETTLE_TOLERANCE = 0.08
# Kernels faster than this a run are measured in every extra pass, settled or not.
CHEAP_KERNEL_S = 2e-3


def settled(medians: list[float], tolerance: float = SETTLE_TOLERANCE) -> bool:
    """Whether a kernel's pass medians agree: the two nearest their median, so one outlier pass is outvoted."""
    if len(medians) < 2:
        return False
    middle = statistics.median(medians)
    a, b = sorted(medians, key=lambda m: abs(m - middle))[:2]
    return abs(a - b) <= tolerance * middle


def unsettled(done: dict, todo) -> list:
    """The kernels of todo to measure again: pass medians that disagree, or a cheap kernel."""
    medians: dict[str, list[float]] = {}
    for key, e in done.items():
        if key != "host" and "error" not in e:
            medians.setdefault(key.split("|", 1)[1], []).append(e["median_s"])

    def again(k) -> bool:
        m = medians.get(spec_key(k.kind, k.shape), [])
        return not settled(m) or statistics.median(m) < CHEAP_KERNEL_S

    return [k for k in todo if again(k)]


def job_key(p: int, kind: str, shape) -> str:
    return f"{p}|{spec_key(kind, shape)}"


class PartialLog:
    """OUT.partial.jsonl: a header line (device, dtype, torch, process state, host times), then one entry per line."""

    def __init__(self, out: Path, header: dict):
        self.path = out.with_name(out.name + ".partial.jsonl")
        self.header = header

    def resume(self) -> dict:
        """Measurements of an interrupted run with the same header, by job key ("host": its host times)."""
        done: dict = {}
        if not self.path.exists():
            return done
        lines = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        if not lines or any(lines[0].get(k) != v for k, v in self.header.items()):
            self.path.unlink()  # another device or setup: start afresh
            return done
        done["host"] = lines[0]["host"]
        for entry in lines[1:]:
            done[job_key(entry.get("pass", 0), entry["kind"], shape_from_json(entry["kind"], entry["shape"]))] = entry
        return done

    def open(self, done: dict, host_times) -> "PartialLog":
        """Append from here on; a new log starts with its header and the host times (measured now)."""
        self.file = self.path.open("a")
        if "host" not in done:
            done["host"] = host_times()
            self.append({**self.header, "host": done["host"]})
        return self

    def append(self, entry: dict) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def measure_kernel(p: int, kernel, dtype: str, setup, clock, limits, cache_bytes: float) -> dict:
    """One pass of one kernel: its timing, backend and buffers, the clock's readings, or the error."""
    from calibration.kernels import make_runner
    from calibration.timers import measure

    entry = {"pass": p, "kind": kernel.kind, "shape": shape_to_json(kernel.shape)}
    started = time.perf_counter()
    runner = None
    try:
        sets = buffer_sets(footprint_bytes(kernel.kind, kernel.shape, dtype), cache_bytes)
        runner = make_runner(kernel.kind, kernel.shape, dtype, setup.device, sets)
        clock.start(kernel.kind, kernel.shape, dtype)
        timing = measure(runner.run, clock, budget_s=limits.budget_s, tolerance=limits.tolerance)
        entry.update(timing.asdict(), backend=runner.backend, buffers=sets, **clock.readings())
    except (RuntimeError, ValueError, TypeError) as e:  # out of memory, or a shape torch refuses
        entry["error"] = str(e).splitlines()[0][:200]
    finally:
        runner = None
        setup.release()
    entry["wall_s"] = round(time.perf_counter() - started, 4)
    return entry


def measure_passes(todo: list, passes: int, max_passes: int, done: dict, measure_one) -> None:
    """`passes` shuffled passes over todo, then extra passes over unsettled kernels up to `max_passes`."""
    from tqdm import tqdm

    jobs = [(p, k) for p in range(passes) for k in random.Random(p).sample(todo, len(todo))]
    jobs = [(p, k) for p, k in jobs if job_key(p, k.kind, k.shape) not in done]
    for p, k in tqdm(jobs, desc="kernels", unit="kernel", file=sys.stderr):
        measure_one(p, k)
    for p in range(passes, max_passes):
        again = unsettled(done, todo)
        if not again:
            break
        random.Random(p).shuffle(again)
        for k in tqdm(again, desc=f"pass {p + 1}, kernels whose passes disagree or cheap ones", unit="kernel",
                      file=sys.stderr):
            if job_key(p, k.kind, k.shape) not in done:
                measure_one(p, k)
