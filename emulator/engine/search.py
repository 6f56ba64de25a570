"""The cheapest configuration meeting a latency SLO at a load: a pruned search over a design space.

A study file names a base scenario, an SLO (`latency_p99_s`, and optionally
`ttft_p99_s`, `tpot_p99_s`), the axes to vary (dotted paths into the base, as
a sweep's: device, policy parameters, workload knobs, a parallel plan, any
key), the policies to try (each its own configuration), and the device counts
to try on `count_axis` (default `cluster.devices`). A configuration is one
value per axis and one policy; at a count it meets the SLO when it runs
without error, completes every request it admits (none rejected or left in
flight) and its p99s are within the targets on every seed.

The search runs far fewer simulations than the grid (configurations x counts
x seeds) by three rules:

- **lower bound**: a configuration whose lone request (every call as fast as
  the first of its kind, at the shortest lengths, on its fastest device, a
  gang's stage at perfect scaling, no queueing: `lone_request.py`) already
  takes longer than the latency target misses at any count, and is not
  simulated; counts too small for a configuration's gang plan are skipped;
- **monotone count**: with everything else fixed, if N devices miss the SLO
  so do fewer, so the smallest meeting count is found by bisection over the
  counts; devices are billed for the whole run, so among meeting counts the
  smallest is taken as the cheapest;
- **load** (optional `max_rate`): the cheapest configuration's load axis is
  bisected for the highest rate that still meets the SLO.

Bisection steps of all configurations run together in waves through
`sweep.run_all` (in this process, a process pool, or Ray). The outcome ranks
the meeting configurations by cost per completed request and marks the Pareto
front of cost per request against p99 latency over every simulated point.
"""

from __future__ import annotations

import copy
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.engine.lone_request import lone_request_bound_s
from emulator.engine.scenario import check_name, read_yaml
from emulator.engine.schema import fail, parse
from emulator.engine.sweep import Run, check_axes, read_base, run_all, set_path, short, split_path
from emulator.errors import UserError, clip

SLO_COLUMNS = ("latency_p99_s", "ttft_p99_s", "tpot_p99_s")


@dataclass(frozen=True)
class Slo:
    latency_p99_s: float = field(metadata={"above": 0})  # end to end, arrival to done
    ttft_p99_s: float | None = field(default=None, metadata={"above": 0})  # time to first token
    tpot_p99_s: float | None = field(default=None, metadata={"above": 0})  # time per output token


@dataclass(frozen=True)
class MaxRate:
    axis: str = "traffic[0].arrival.rate_per_s"  # the load knob, bisected from the base's value upward
    high: float = field(default=10.0, metadata={"above": 0})  # the highest rate tried
    steps: int = field(default=5, metadata={"min": 1, "max": 20})  # bisection steps after probing `high`


@dataclass(frozen=True)
class SearchFile:
    name: str
    base: str  # scenario file, relative to the study file
    slo: Slo
    counts: tuple[int, ...]  # device counts to try, set on count_axis
    axes: dict[str, tuple[int | float | str | bool | tuple[int | float, ...], ...]] = field(default_factory=dict)
    count_axis: str = "cluster.devices"
    policies: tuple[str, ...] | None = None  # the base's policies to try (default all), each a configuration
    seeds: tuple[int, ...] = (0,)
    max_rate: MaxRate | None = None


@dataclass(frozen=True)
class Config:
    """One point of the design space but the count: axis values and one policy of the base."""
    index: int
    values: tuple[tuple[str, Any], ...]  # (axis, value), without the count
    policy: dict  # the policy's entry in the base scenario

    @property
    def label(self) -> str:
        parts = [f"{a}={short(v, 30)}" for a, v in self.values]
        return ", ".join([self.policy.get("name", self.policy["policy"]), *parts])


@dataclass
class Outcome:
    """What the search found: per configuration its verdict, the simulated points, and the counts."""
    study: SearchFile
    configs: list[dict]  # one row per configuration: lower bound, status, meeting count, metrics there
    points: list[dict]  # one row per simulated (configuration, count): meets, p99, cost per request
    simulations: int  # simulations run (a run of one policy on one seed)
    grid_size: int  # configurations x counts x seeds: what the full grid would run
    max_rate: dict | None = None  # for the cheapest configuration: highest rate meeting the SLO

    @property
    def best(self) -> dict | None:
        ranked = [c for c in self.configs if c["status"] == "meets"]
        return ranked[0] if ranked else None


def load_study(path: str | Path) -> tuple[SearchFile, dict, Path]:
    """The study, its base scenario's YAML data, and the base's directory; defects are one-line UserErrors."""
    path = Path(path)
    data = read_yaml(path, "search study")
    try:
        study = parse(SearchFile, data, "search")
        check_name(study.name, "search.name")
        if not study.counts:
            fail("search.counts", "at least one device count is needed")
        if any(c < 1 for c in study.counts):
            fail("search.counts", f"device counts must be >= 1, got {min(study.counts)}")
        if not study.seeds:
            fail("search.seeds", "at least one seed is needed")
        for axis, values in study.axes.items():
            if not values:
                fail(f"search.axes.{clip(axis)}", "needs at least one value")
            split_path(axis)
        split_path(study.count_axis)
        if study.count_axis in study.axes:
            fail(f"search.axes.{clip(study.count_axis)}", "is the count axis; list its values in counts")
    except UserError as e:
        raise UserError(f"{path}: {str(e).removeprefix('search.')}") from None
    base_path = path.parent / study.base
    base = read_base(path, study.base)
    if not isinstance(base, dict) or not isinstance(base.get("policies"), list):
        raise UserError(f"{path}: base scenario {study.base!r} has no list of policies")
    if study.policies is not None:
        named = {p.get("name", p.get("policy")) for p in base["policies"] if isinstance(p, dict)}
        missing = [n for n in study.policies if n not in named]
        if missing:
            raise UserError(f"{path}: policies {missing} are not in {study.base} (it has {', '.join(map(str, named))})")
    axes = {**study.axes, study.count_axis: study.counts}
    if study.max_rate:
        axes[study.max_rate.axis] = (study.max_rate.high,)
    try:
        check_axes(axes, base, base_path.parent)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return study, base, base_path.parent


def configurations(study: SearchFile, base: dict) -> list[Config]:
    """Every configuration: the product of the axes' values, times the policies tried."""
    policies = [p for p in base["policies"] if study.policies is None
                or p.get("name", p.get("policy")) in study.policies]
    axes = list(study.axes)
    combos = list(itertools.product(*(study.axes[a] for a in axes)))
    return [Config(i, tuple(zip(axes, combo)), policy)
            for i, (policy, combo) in enumerate(itertools.product(policies, combos))]


def scenario_of(study: SearchFile, base: dict, base_dir: Path, config: Config, count: int, extra=()):
    """The typed Scenario of a configuration at a count (validated; for its lower bound)."""
    from emulator.engine.scenario import scenario_from_data

    data = copy.deepcopy(base)
    for axis, value in (*config.values, (study.count_axis, count), ("policies", [config.policy]), *extra):
        set_path(data, axis, value)
    return scenario_from_data(data, str(base_dir), f"configuration {config.index}")


def first_valid(study: SearchFile, base: dict, base_dir: Path, config: Config, counts: list[int]):
    """(index of the smallest count at which the configuration is a valid scenario, that Scenario); a plan needing
    more GPUs than a count gives is invalid there and at every smaller count. Raises the last count's UserError."""
    problem = None
    for i, n in enumerate(counts):
        try:
            return i, scenario_of(study, base, base_dir, config, n)
        except UserError as e:
            problem = e
    raise problem


def meets(row: dict, slo: Slo) -> bool:
    """Whether one simulated run (a sweep row) served every request within the SLO's targets."""
    if row.get("error") or row["rejected"] or row["in_flight"] or not row["completed"]:
        return False
    for column in SLO_COLUMNS:
        target = getattr(slo, column)
        if target is not None and (row[column] is None or row[column] > target):
            return False
    return True


@dataclass
class Probe:
    """One configuration's bisection over the counts: the meeting index lies in [lo, hi]; hi = len: none yet."""
    config: Config
    lo: int
    hi: int
    rows: dict = field(default_factory=dict)  # count index -> list of rows (one per seed)

    def next_index(self) -> int | None:
        return None if self.lo >= self.hi else (self.lo + self.hi) // 2


class Searcher:
    """Runs the waves of simulations and keeps the points; `exhaustive` runs the whole grid instead."""

    def __init__(self, study: SearchFile, base: dict, base_dir: Path, workers: int | None, ray: str | None,
                 progress: bool):
        self.study, self.base, self.base_dir = study, base, base_dir
        self.workers, self.ray, self.progress = workers, ray, progress
        self.ids = itertools.count()
        self.simulations = 0

    def run(self, jobs: list[tuple[Config, int, tuple]]) -> list[list[dict]]:
        """Simulate (configuration, count, extra axis values) jobs on every seed; per job, one row per seed."""
        runs, owner = [], {}
        for j, (config, count, extra) in enumerate(jobs):
            values = (*config.values, (self.study.count_axis, count), ("policies", [config.policy]), *extra)
            for seed in self.study.seeds:
                run = Run(next(self.ids), seed, values)
                runs.append(run)
                owner[run.run_id] = j
        out: list[list[dict]] = [[] for _ in jobs]
        for rows in run_all(runs, self.base, str(self.base_dir), self.study.name, self.workers, self.ray):
            row = rows[0]
            out[owner[row["run_id"]]].append(row)
        self.simulations += len(runs)
        return out

    def say(self, text: str) -> None:
        if self.progress:
            print(f"{self.study.name}: {text}", file=sys.stderr, flush=True)


def summarize(rows: list[dict], slo: Slo) -> dict:
    """A point over its seeds: meets on every seed; the worst p99s, the mean costs."""
    ok = all(meets(r, slo) for r in rows)
    point = {"meets": ok, "error": next((r["error"] for r in rows if r.get("error")), "")}
    for column in ("latency_p99_s", "ttft_p99_s", "tpot_p99_s", "throughput_per_s"):
        values = [r.get(column) for r in rows if r.get(column) is not None]
        point[column] = max(values) if values else None
    for column in ("cost_usd", "usd_per_request", "usd_per_image", "usd_per_video_s", "device_hours"):
        values = [r.get(column) for r in rows if r.get(column) is not None]
        point[column] = sum(values) / len(values) if len(values) == len(rows) and values else None
    return point


def search(study: SearchFile, base: dict, base_dir: Path, workers: int | None = None, ray: str | None = None,
           progress: bool = True, exhaustive: bool = False) -> Outcome:
    """Find the configurations meeting the SLO, ranked by cost per request (see the module's docstring)."""
    configs = configurations(study, base)
    counts = sorted(set(study.counts))
    grid_size = len(configs) * len(counts) * len(study.seeds)
    searcher = Searcher(study, base, base_dir, workers, ray, progress)
    searcher.say(f"{len(configs)} configurations x {len(counts)} counts x {len(study.seeds)} seeds = "
                 f"{grid_size} simulations in the full grid")
    bounds, invalid, start = {}, {}, {}
    for c in configs:
        try:
            start[c.index], s = first_valid(study, base, base_dir, c, counts)
            bounds[c.index] = lone_request_bound_s(s)
        except UserError as e:  # this combination of axis values is a valid scenario at no count
            bounds[c.index], invalid[c.index] = float("inf"), str(e)
    pruned = {i for i, b in bounds.items() if i not in invalid and not exhaustive and b > study.slo.latency_p99_s}
    searcher.say(f"{len(pruned)} configurations pruned: their lone request exceeds the "
                 f"{study.slo.latency_p99_s:g} s target")
    probes = [Probe(c, start[c.index], len(counts)) for c in configs if c.index not in pruned | set(invalid)]
    points: list[dict] = []
    wave = 0
    while True:
        if exhaustive:
            jobs = [(p, i) for p in probes for i in range(len(counts)) if i not in p.rows]
        else:
            jobs = [(p, p.next_index()) for p in probes if p.next_index() is not None]
        if not jobs:
            break
        wave += 1
        results = searcher.run([(p.config, counts[i], ()) for p, i in jobs])
        for (p, i), rows in zip(jobs, results):
            p.rows[i] = rows
            point = summarize(rows, study.slo)
            points.append({"config": p.config.index, "count": counts[i], **point})
            if point["meets"]:
                p.hi = i
            else:
                p.lo = i + 1
        searcher.say(f"wave {wave}: {len(jobs)} points, {searcher.simulations} of {grid_size} simulations so far")
    rows = [config_row(c, bounds[c.index], c.index in pruned, counts, points, invalid.get(c.index)) for c in configs]
    rows.sort(key=lambda r: (r["status"] != "meets", r["usd_per_request"] if r["usd_per_request"] is not None
                             else float("inf"), r["index"]))
    mark_front(points)
    outcome = Outcome(study, rows, points, searcher.simulations, grid_size)
    best = outcome.best
    if study.max_rate and best is not None:
        outcome.max_rate = bisect_rate(searcher, study, base, configs[best["index"]], best["count"])
        outcome.simulations = searcher.simulations
    searcher.say(f"{outcome.simulations} simulations run of the full grid's {grid_size}")
    return outcome


def config_row(c: Config, bound: float, pruned: bool, counts: list[int], points: list[dict],
               invalid: str | None = None) -> dict:
    """A configuration's verdict: its smallest meeting count and the metrics there, or why none."""
    mine = {p["count"]: p for p in points if p["config"] == c.index}
    meeting = [n for n in counts if n in mine and mine[n]["meets"]]
    row = {"index": c.index, "policy": c.policy.get("name", c.policy["policy"]), **dict(c.values),
           "lone_request_s": bound}
    if invalid:
        row.update(status=f"invalid: {invalid[:200]}", count=None)
    elif pruned:
        row.update(status="pruned: lone request over the target", count=None)
    elif not meeting:
        row.update(status=f"misses at {max(counts)} devices", count=None)
    else:
        row.update(status="meets", count=meeting[0])
    at = mine.get(row["count"]) if row["count"] is not None else None
    for column in ("latency_p99_s", "ttft_p99_s", "tpot_p99_s", "throughput_per_s", "cost_usd", "usd_per_request",
                   "usd_per_image", "usd_per_video_s"):
        row[column] = at[column] if at else None
    return row


def mark_front(points: list[dict]) -> None:
    """Mark the meeting points no other meeting point beats on both cost per request and p99 latency."""
    ok = [p for p in points if p["meets"] and p["usd_per_request"] is not None]
    for p in points:
        p["pareto"] = p in ok and not any(
            q["usd_per_request"] <= p["usd_per_request"] and q["latency_p99_s"] <= p["latency_p99_s"]
            and (q["usd_per_request"], q["latency_p99_s"]) != (p["usd_per_request"], p["latency_p99_s"]) for q in ok)


def bisect_rate(searcher: Searcher, study: SearchFile, base: dict, config: Config, count: int) -> dict:
    """The highest load (on max_rate.axis) at which the configuration at `count` still meets the SLO."""
    spec = study.max_rate
    low = current_value(base, config, spec.axis)
    probe = lambda rate: summarize(searcher.run([(config, count, ((spec.axis, rate),))])[0], study.slo)["meets"]
    if probe(spec.high):
        return {"axis": spec.axis, "rate": spec.high, "bounded_by_high": True, "config": config.index, "count": count}
    high = spec.high
    for _ in range(spec.steps):
        mid = (low + high) / 2
        low, high = (mid, high) if probe(mid) else (low, mid)
    searcher.say(f"max rate: {low:.4g} on {spec.axis} (next tried {high:.4g} misses)")
    return {"axis": spec.axis, "rate": low, "bounded_by_high": False, "config": config.index, "count": count}


def current_value(base: dict, config: Config, axis: str) -> float:
    """The value `axis` has in the configuration (its own axis value, else the base's)."""
    values = dict(config.values)
    if axis in values:
        return float(values[axis])
    node: Any = base
    for key in split_path(axis):
        node = node[key]
    if not isinstance(node, (int, float)):
        raise UserError(f"max_rate.axis {axis!r}: the base's value is not a number")
    return float(node)
