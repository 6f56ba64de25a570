"""Run a scenario: one simulation per policy on the same traffic, outputs and a comparison.

`simulate_policy` builds a fresh SimPy environment, cluster and arrival
processes for one policy, runs to the horizon (or until drained), checks that
every arrived request is accounted for, and writes `summary.json`,
`requests.csv`, `timeseries.csv` (and `trace.json`; under a gang policy
`emulator.engine.gang_metrics`' outputs); a summary says per device
where its kernel times come from (`cost_sources`), and the runtime when it is
not the default (eager). Pipelines, cost models and
memoized step costs are built once per scenario and shared by its policies.
`run_scenario` writes every policy's results into a staging folder beside the
target and moves them into place only when all have run, so a failed or
interrupted run leaves nothing that looks like a result.
"""

from __future__ import annotations

import itertools
import json
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import simpy

from emulator.cost.runtime import DEFAULT_RUNTIME
from emulator.engine.arrivals import start_arrivals
from emulator.engine.cluster import Cluster
from emulator.engine.columns import METRICS, TOKEN_TABLE
from emulator.engine.gang_metrics import GangMetrics
from emulator.engine.gangs import GangSetup
from emulator.engine.metrics import Metrics
from emulator.engine.policies import POLICIES
from emulator.engine.policies.gang import GangPolicy
from emulator.engine.rank_stages import RankStages
from emulator.engine.price import run_cost
from emulator.engine.request import RequestClass
from emulator.engine.scenario import PolicySpec, Scenario, length_ranges, resolve_path
from emulator.engine.stepcost import StepCosts
from emulator.engine.topology import node_size, stage_plans
from emulator.engine.variants import Sharing, Shared, Variants
from emulator.errors import UserError, clip


@dataclass
class Context:
    """What a scenario's policies share: pipelines, request classes and their variants per lengths, cost
    models, memoized step costs."""

    scenario: Scenario
    variants: list[Variants] = field(default_factory=list)  # per traffic class
    shared: Shared = field(default_factory=Shared)
    costs: dict[str, StepCosts] = field(default_factory=dict)  # per device spec
    sources: dict[str, dict] = field(default_factory=dict)  # per device spec: where its kernel times come from
    rank_stages: RankStages = field(default_factory=RankStages)  # gangs' rank graphs, made once

    def __post_init__(self):
        from emulator.cost import cost_model, runtime
        from emulator.cost.costing import cost_source

        s = self.scenario
        ranges = [length_ranges(s, t) for t in s.traffic]
        groups = {}
        for t, r in zip(s.traffic, ranges):  # one Sharing per workload and knobs, over all its classes' lengths
            if r:
                first, together = groups.get(base_key(t), (t, {}))
                groups[base_key(t)] = (first, merged(together, r))
        sharing = {k: Sharing.of(self.shared, t, r) for k, (t, r) in groups.items()}
        for i, (t, r) in enumerate(zip(s.traffic, ranges)):
            self.variants.append(Variants(self.shared, t, i, r, sharing[base_key(t)] if r else None))
        for g in s.groups:
            spec = g.device or s.device
            if spec not in self.costs:
                self.costs[spec] = StepCosts(cost_model(resolve_path(s, spec), s.attention), runtime(s.runtime),
                                             self.shared.twins)
                self.sources[spec] = cost_source(resolve_path(s, spec))

    @property
    def classes(self) -> list[RequestClass]:
        """Each traffic class's RequestClass at its knobs (or shortest lengths)."""
        return [v.proto for v in self.variants]


def base_key(t) -> str:
    return f"{t.workload}:{json.dumps(t.knobs, sort_keys=True)}"


def merged(a: dict, b: dict) -> dict:
    """Length ranges of two classes together: the smaller low, the larger high."""
    out = dict(a)
    for key, (low, high, typical) in b.items():
        lo, hi, _ = out.get(key, (low, high, typical))
        out[key] = (min(lo, low), max(hi, high), typical)
    return out


def schedules(ctx: Context) -> dict:
    """{"schedules": {class: its loop stage's per-call schedule}} where some class has one, else {} (so
    summaries of unscheduled scenarios are unchanged)."""
    named = {c.name: c.loop_stage.schedule.text() for c in ctx.classes if c.loop_stage.schedule is not None}
    return {"schedules": named} if named else {}


def simulate_policy(ctx: Context, spec: PolicySpec, out_dir: Path | None, seed: int,
                    trace: bool = False, progress: bool = False) -> dict:
    """One policy on the scenario's traffic: its outputs written into `out_dir`, its summary returned."""
    s = ctx.scenario
    gangs = issubclass(POLICIES[spec.policy], GangPolicy)
    metrics = (GangMetrics if gangs else Metrics)(out_dir, s.resolution_s, trace)
    try:
        end_s = replay(ctx, spec, metrics, seed, progress)
        metrics.finish(end_s)
        measured = metrics.summary(end_s)
        cost = run_cost(s, {g.name: ctx.costs[g.device or s.device].model.device for g in s.groups},
                        {name: spill.count for name, spill in metrics.per_class.items()}, end_s)
    finally:
        metrics.close()
    if progress:
        print(file=sys.stderr)
    summary = {
        "scenario": s.name, "policy": spec.name, "kind": spec.policy, "params": asdict(spec.params),
        "router": spec.router or s.cluster.router,
        "device": s.device, "attention": s.attention,
        **({} if s.runtime == DEFAULT_RUNTIME else {"runtime": s.runtime}),  # eager summaries are unchanged
        "seed": seed, "horizon_s": s.horizon_s, "drain": s.drain,
        "cost_sources": list(ctx.sources.values()),
        **schedules(ctx),
        **measured,
        "cost": cost,
    }
    if out_dir is not None:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def replay(ctx: Context, spec: PolicySpec, metrics: Metrics, seed: int, progress: bool) -> float:
    """Run the cluster under one policy to the horizon (or drained); the simulated end time."""
    s = ctx.scenario
    env = simpy.Environment()
    klass = POLICIES[spec.policy]
    groups = [(g.name, g.devices, g.stages, ctx.costs[g.device or s.device].model) for g in s.groups]
    costs = {g.name: ctx.costs[g.device or s.device] for g in s.groups}
    setup = None
    if issubclass(klass, GangPolicy):
        setup = GangSetup(klass(spec.params), tuple(stage_plans(s, t) for t in s.traffic), ctx.rank_stages)
    cluster = Cluster(env, groups, ctx.classes, costs, spec.router or s.cluster.router,
                      lambda device: klass(spec.params, device), metrics, setup,
                      tuple(node_size(s, g, lambda spec: ctx.costs[spec].model.device.gpus_per_node)
                            for g in s.groups))
    metrics.attach(cluster.devices)
    ids = itertools.count()
    for v, t in zip(ctx.variants, s.traffic):
        rng = np.random.default_rng([seed, v.index])
        classes = v.for_run(np.random.default_rng([seed, v.index, 1]), s.base_dir)  # lengths: a stream of their own
        start_arrivals(env, cluster, classes, t.arrival, s.horizon_s, t.max_requests, rng, ids, s.base_dir)
    if progress:
        env.process(ticker(env, s.horizon_s, spec.name))
    env.run() if s.drain else env.run(until=s.horizon_s)
    in_flight = cluster.in_flight()
    if metrics.n_arrived != metrics.n_completed + metrics.n_rejected + in_flight or len(metrics.live) != in_flight:
        raise RuntimeError(f"policy {spec.name}: {metrics.n_arrived} arrived but {metrics.n_completed} completed, "
                           f"{metrics.n_rejected} rejected and {in_flight} in flight ({len(metrics.live)} live)")
    return env.now


def ticker(env, horizon_s: float, name: str):
    while env.now < horizon_s:
        print(f"\r  {name}: {env.now:8.1f} / {horizon_s:g} s simulated", end="", file=sys.stderr, flush=True)
        yield env.timeout(horizon_s / 100)


def run_scenario(s: Scenario, out_dir: Path | None, seed: int | None = None, trace: bool = False,
                 progress: bool = False, source: str | None = None) -> list[dict]:
    """Every policy of the scenario in turn; returns their summaries.

    Results are written into a staging folder beside `out_dir` and moved into
    it only once every policy has run: a run that fails or is interrupted
    leaves nothing behind. `source`, the scenario's file, prefixes the errors
    the scenario causes (a model too large for its device).
    """
    if out_dir is None:
        with blamed_on(source):
            return run_policies(s, None, seed, trace, progress)
    with staged(out_dir) as staging, blamed_on(source):
        return run_policies(s, staging, seed, trace, progress)


@contextmanager
def blamed_on(source: str | None):
    """User errors raised inside, prefixed with the scenario file that caused them."""
    try:
        yield
    except UserError as e:
        if source is None:
            raise
        raise UserError(f"{clip(source)}: {e}") from None


def run_policies(s: Scenario, out_dir: Path | None, seed: int | None, trace: bool, progress: bool) -> list[dict]:
    ctx = Context(s)
    seed = s.seed if seed is None else seed
    summaries = []
    for spec in s.policies:
        started = time.perf_counter()
        summary = simulate_policy(ctx, spec, out_dir / spec.name if out_dir else None, seed, trace, progress)
        summary_wall = time.perf_counter() - started
        summaries.append(summary)
        if progress:
            print(f"  {spec.name}: {summary['step_events']} step events in {summary_wall:.1f} s", file=sys.stderr)
    if out_dir is not None:
        write_comparison(summaries, out_dir / "comparison.csv")
    return summaries


# -- the results folder -------------------------------------------------------------------------------

@contextmanager
def staged(target: Path):
    """A new folder beside `target` to write results into: published into `target` on success, removed on
    any failure (Ctrl-C included)."""
    staging = staging_dir(target)
    try:
        yield staging
        publish(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when published


def staging_dir(target: Path) -> Path:
    """Create the staging folder beside `target`, or say in one line why results cannot go there."""
    if target.exists() and not target.is_dir():
        raise UserError(f"cannot write results to {clip(str(target))}: it is a file, not a folder")
    parent = target.absolute().parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{target.absolute().name}.partial-", dir=parent))
    except OSError as e:
        raise UserError(f"cannot create the results folder {clip(str(target))} ({e.strerror or e})") from None


def publish(staging: Path, target: Path) -> None:
    """Move finished results into `target`: the whole folder when it is new, else entry by entry, each
    replacing its namesake (policy folders, comparison.csv last); other entries of `target` stay."""
    try:
        staging.rename(target)  # target absent or empty: one atomic rename
        return
    except OSError:
        if not target.is_dir():
            raise
    entries = sorted(staging.iterdir(), key=lambda p: (p.name == "comparison.csv", p.name))
    replaced = staging / ".replaced"
    replaced.mkdir()
    for entry in entries:
        dest = target / entry.name
        if dest.is_dir() and not dest.is_symlink():
            dest.rename(replaced / entry.name)
        elif dest.exists() or dest.is_symlink():
            dest.unlink()
        entry.rename(dest)


TABLE = (  # header, summary getter, format
    ("policy", lambda x: x["policy"], "{}"),
    ("done", lambda x: x["requests"]["completed"], "{}"),
    ("rej", lambda x: x["requests"]["rejected"], "{}"),
    ("in flt", lambda x: x["requests"]["in_flight"], "{}"),
    ("p50 s", lambda x: x["latency_s"]["p50"], "{:.3f}"),
    ("p99 s", lambda x: x["latency_s"]["p99"], "{:.3f}"),
    ("queue p50 s", lambda x: x["queueing_s"]["p50"], "{:.3f}"),
    ("req/s", lambda x: x["throughput_per_s"], "{:.3f}"),
    ("SLO %", lambda x: None if x["slo_attainment"] is None else 100 * x["slo_attainment"], "{:.1f}"),
    ("busy %", lambda x: x["device_busy_pct"], "{:.1f}"),
    ("TFLOP/s", lambda x: x["attained_tflops"], "{:.1f}"),
    ("HBM %", lambda x: x["hbm_util_pct_mean"], "{:.1f}"),
    ("peak GB", lambda x: x["peak_memory_GB"], "{:.1f}"),
    ("USD/req", lambda x: x["cost"]["usd_per_request"], "{:.3g}"),
)


def table_of(summaries: list[dict]) -> tuple:
    """TABLE, with the token columns (columns.TOKEN_TABLE) after the queueing delay when a policy has them."""
    if all(x.get("ttft_s", {}).get("p50") is None for x in summaries):
        return TABLE
    paths = {column: keys for column, keys, _ in METRICS}
    token = tuple((column.replace("_p", " p").replace("_s", " s"), getter(paths[column]), "{:.4f}")
                  for column in TOKEN_TABLE)
    at = [h for h, _, _ in TABLE].index("queue p50 s") + 1
    return TABLE[:at] + token + TABLE[at:]


def getter(keys: tuple[str, ...]):
    def get(summary):
        for key in keys:
            summary = summary[key]
        return summary
    return get


def cell(value, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def comparison_table(summaries: list[dict]) -> str:
    table = table_of(summaries)
    rows = [[h for h, _, _ in table]] + [[cell(get(x), fmt) for _, get, fmt in table] for x in summaries]
    widths = [max(len(r[i]) for r in rows) for i in range(len(table))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in rows]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def write_comparison(summaries: list[dict], path: Path) -> None:
    table = table_of(summaries)
    header = ",".join(h.replace(" ", "_") for h, _, _ in table)
    lines = [header] + [",".join(cell(get(x), "{}") for _, get, _ in table) for x in summaries]
    path.write_text("\n".join(lines) + "\n")
