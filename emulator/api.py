"""The scripting API: `simulate(scenario)`, `sweep(sweep_file)` and `search(study_file)`, returning pandas tables.

    from emulator import simulate, sweep
    result = simulate("configs/pods.yaml")        # or a dict in the scenario format
    result.summary                                 # one row per policy, columns in emulator.engine.columns
    result.requests, result.timeseries             # every request, every time bin (column policy)
    result.summaries                               # each policy's summary.json, nested, in full
    table = sweep("configs/sweep-pods.yaml", workers=2)   # one row per run and policy, the same metric columns
    found = search("configs/search-video-slo.yaml")       # the cheapest configuration meeting a p99 SLO
    found.configs, found.points, found.best              # DataFrames, and the best configuration's row

pandas (and simpy) are imported when these are called, not when `emulator` is.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass
class SimulationResult:
    summaries: list[dict]  # each policy's summary.json
    summary: object  # DataFrame, one row per policy: identity, metric columns (engine/columns.py), params.NAME
    requests: object  # DataFrame of requests.csv, all policies (column policy)
    timeseries: object  # DataFrame of timeseries.csv, all policies


def simulate(scenario, out: str | Path | None = None, seed: int | None = None) -> SimulationResult:
    """Run a scenario (a path, a dict in the scenario format, or a Scenario) under each of its policies."""
    import pandas as pd

    from emulator.engine.scenario import Scenario, load_scenario, scenario_from_data
    from emulator.engine.simulate import run_scenario

    source = str(scenario) if isinstance(scenario, (str, Path)) else None
    if isinstance(scenario, (str, Path)):
        scenario = load_scenario(scenario)
    elif isinstance(scenario, dict):
        scenario = scenario_from_data(scenario)
    elif not isinstance(scenario, Scenario):
        raise TypeError(f"simulate takes a scenario path, dict or Scenario, not {type(scenario).__name__}")
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(out) if out else Path(tmp)
        summaries = run_scenario(scenario, where, seed, source=source)  # errors name the file
        requests = pd.concat([pd.read_csv(where / s["policy"] / "requests.csv").assign(policy=s["policy"])
                              for s in summaries], ignore_index=True)
        series = pd.concat([pd.read_csv(where / s["policy"] / "timeseries.csv").assign(policy=s["policy"])
                            for s in summaries], ignore_index=True)
    return SimulationResult(summaries, summary_table(summaries), requests, series)


def summary_table(summaries: list[dict]):
    """One row per policy: who it is, every metric column sweep tables have too, then its parameters."""
    import pandas as pd

    from emulator.engine.columns import COST_METRICS, IDENTITY, metric_values

    return pd.DataFrame([{**{k: s[k] for k in IDENTITY}, **metric_values(s), **metric_values(s, COST_METRICS),
                          **{f"params.{k}": v for k, v in s["params"].items()}} for s in summaries])


def sweep(sweep_file: str | Path, out: str | Path | None = None, workers: int | None = None,
          ray: str | None = None, progress: bool = False):
    """Run a sweep file; the table (DataFrame) of every run and policy, sorted by run id and policy."""
    from emulator.engine.sweep import execute, load_sweep, read_table

    spec, base, base_dir = load_sweep(sweep_file)
    with tempfile.TemporaryDirectory() as tmp:
        results = execute(spec, base, base_dir, Path(out) if out else Path(tmp), workers, ray, progress)
        return read_table(results)


@dataclass
class SearchResult:
    configs: object  # DataFrame, one row per configuration: status, smallest meeting count, its metrics; best first
    points: object  # DataFrame, one row per simulated (configuration, count): meets, pareto, p99, costs
    best: dict | None  # the cheapest configuration meeting the SLO (a row of configs), or None
    simulations: int  # simulations run
    grid_size: int  # simulations the full grid would run
    max_rate: dict | None  # the highest load the best configuration meets the SLO at (when the study asks)


def search(study_file: str | Path, out: str | Path | None = None, workers: int | None = None,
           ray: str | None = None, progress: bool = False, exhaustive: bool = False) -> SearchResult:
    """Run a search study (configs/search-*.yaml); writes its files into `out` when given."""
    import pandas as pd

    from emulator.engine.search import load_study, search as run_search

    study, base, base_dir = load_study(study_file)
    outcome = run_search(study, base, base_dir, workers, ray, progress, exhaustive)
    if out is not None:
        from emulator.engine.search_report import write

        write(outcome, Path(out))
    return SearchResult(pd.DataFrame(outcome.configs), pd.DataFrame(outcome.points), outcome.best,
                        outcome.simulations, outcome.grid_size, outcome.max_rate)
