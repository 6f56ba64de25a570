"""Arrival processes of one traffic class: Poisson, fixed rate, closed loop, trace replay.

Each is a SimPy process that creates requests and hands them to the cluster
until the horizon (or the class's request cap). Randomness comes from the
class's own generator, seeded from the scenario seed and the class's position,
so adding a class does not change another's arrivals. A request's class is
the variant of its traffic class at its prompt and output lengths: drawn by
the class's `LengthSampler` (its own generator), or given per row by a trace's
prompt_tokens and output_tokens columns (a blank cell falls back to the class's
lengths or knobs; prompts rounded as the class rounds them).
`expected_requests` estimates, before a run, how many requests a class will
make.
"""

from __future__ import annotations

import csv
import itertools
import math
from pathlib import Path

import numpy as np

from emulator.engine.lengths import LENGTH_KEYS, row_int, round_prompt
from emulator.engine.request import Request
from emulator.errors import UserError, excerpt


def start_arrivals(env, cluster, classes, arrival, horizon_s: float, cap: int | None,
                   rng: np.random.Generator, ids: itertools.count, base_dir: str) -> None:
    """classes: the traffic class's `Variants` (its RequestClass per lengths)."""
    made = itertools.count(1)

    def new_request(given: dict | None = None) -> Request:
        return Request(next(ids), classes.draw(given), env.now)

    def open_loop(rows):
        for gap, given in rows:
            if env.now + gap >= horizon_s:
                return
            yield env.timeout(gap)
            cluster.submit(new_request(given))
            if cap is not None and next(made) >= cap:
                return

    def user():
        while env.now < horizon_s and (cap is None or next(made) <= cap):
            r = new_request()
            r.on_done = env.event()
            cluster.submit(r)
            yield r.on_done
            if arrival.think_s > 0:
                yield env.timeout(rng.exponential(arrival.think_s))

    process = arrival.process
    if process == "poisson":
        env.process(open_loop((g, None) for g in iter(lambda: rng.exponential(1.0 / arrival.rate_per_s), None)))
    elif process == "fixed":
        gaps = itertools.chain([0.0], itertools.repeat(1.0 / arrival.rate_per_s))
        env.process(open_loop((g, None) for g in gaps))
    elif process == "closed":
        for _ in range(arrival.users):
            env.process(user())
    else:
        env.process(open_loop(trace_rows(Path(base_dir) / arrival.path, classes.name, classes.round_to)))


def expected_requests(arrival, horizon_s: float, cap: int | None, trace_rows: int, request_s) -> float:
    """About how many requests a class makes: rate x horizon, the trace's rows, or each closed-loop
    user's cycles (a request at least `request_s()` long, then the think time); never more than `cap`."""
    process = arrival.process
    if process in ("poisson", "fixed"):
        n = arrival.rate_per_s * horizon_s + 1
    elif process == "trace":
        n = trace_rows
    else:
        cycle_s = arrival.think_s + request_s()
        n = arrival.users * (horizon_s / cycle_s + 1) if cycle_s > 0 else math.inf
    return float(n if cap is None else min(n, cap))


def trace_gaps(path: Path, class_name: str):
    """Gaps between the trace's arrival times (column time_s) of this class (column class, if present)."""
    return (gap for gap, _ in trace_rows(path, class_name))


def trace_rows(path: Path, class_name: str, round_to: int = 1):
    """(gap, {length name: tokens}) per trace row of this class: the gap since the previous arrival (column
    time_s), and the row's prompt_tokens and output_tokens where those columns are present and not blank
    (prompts rounded up to a multiple of `round_to`)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "time_s" not in reader.fieldnames:
            raise UserError(f"{path}: a trace needs a time_s column")
        keys = [k for k in LENGTH_KEYS if k in reader.fieldnames]
        last = 0.0
        for line, row in enumerate(reader, start=2):
            if "class" in row and row["class"] not in (class_name, None, ""):
                continue
            try:
                t = float(row["time_s"])
            except (TypeError, ValueError):
                raise UserError(f"{path}:{line}: time_s {excerpt(row['time_s'])} is not a number") from None
            if not t >= last:
                raise UserError(f"{path}:{line}: time_s must not decrease ({t} after {last})")
            given = {k: row_int(path, line, k, row[k]) for k in keys if row[k] not in (None, "")}
            if "prompt_tokens" in given:
                given["prompt_tokens"] = round_prompt(given["prompt_tokens"], round_to, None)
            yield t - last, given
            last = t
