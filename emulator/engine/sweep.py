"""Design-space sweeps: many scenarios from one base, run in parallel, one tidy table.

A sweep file names a base scenario, the axes to vary (dotted paths into the
base scenario's YAML, e.g. `policies[2].stagger` or `traffic[0].arrival.rate_per_s`),
grid or random sampling, and seeds; an axis path that leads nowhere in the base is
refused before any run. Each run is the base with one combination of
axis values and one seed; every policy of the base runs on it, giving one row
per (run, policy): the run id, the swept values, the seed, the policy and every
summary metric, or the run's error. Rows are appended to `results.csv` as runs
finish, so an interrupted sweep resumes where it stopped; `sweep-spec.json` beside
it holds a fingerprint of the whole resolved specification, and a folder written
by a different specification is refused rather than resumed. Runs execute in a
local process pool, or as Ray tasks; either way the table, sorted by run id and
policy, is the same. Ctrl-C stops the runs at once, keeps the rows written so
far, and ends in one line (`emulator.errors.Interrupted`) rather than a traceback.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import importlib.metadata
import io
import itertools
import json
import os
import re
import signal
import sys
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from emulator.engine.scenario import read_yaml
from emulator.engine.schema import fail, parse, type_name
from emulator.engine.columns import COLUMNS, COST_COLUMNS, COST_METRICS, metric_values
from emulator.errors import Interrupted, UserError, clip

PATH_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)((?:\[\d+\])*)")
SPEC_FILE = "sweep-spec.json"  # beside results.csv: the fingerprint of the specification that wrote it


@dataclass(frozen=True)
class SweepFile:
    name: str
    base: str  # scenario file, relative to the sweep file
    axes: dict[str, tuple[int | float | str | bool | tuple[int | float, ...], ...]]
    policies: tuple[str, ...] | None = None  # the base's policies to run (default all); axes index this list
    sampling: Literal["grid", "random"] = "grid"
    count: int | None = field(default=None, metadata={"min": 1})  # random sampling: how many combinations
    seeds: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class Run:
    run_id: int
    seed: int
    values: tuple[tuple[str, Any], ...]  # (axis, value)


def split_path(path: str) -> list:
    """`policies[2].stagger` -> ['policies', 2, 'stagger']."""
    keys = []
    for part in path.split("."):
        m = PATH_PART.fullmatch(part)
        if not m:
            raise UserError(f"axis {path!r}: {part!r} is not a key or key[index]")
        keys.append(m.group(1))
        keys += [int(i) for i in re.findall(r"\[(\d+)\]", m.group(2))]
    return keys


def path_text(keys: list) -> str:
    """['policies', 2, 'stagger'] -> `policies[2].stagger`, as the scenario's messages name it."""
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")


def set_path(data: dict, path: str, value) -> None:
    keys = split_path(path)
    node = data
    for k in keys[:-1]:
        try:
            node = node[k]
        except (KeyError, IndexError, TypeError):
            raise UserError(f"axis {path!r}: the base scenario has no {k!r} there") from None
    if isinstance(node, list) and not (isinstance(keys[-1], int) and keys[-1] < len(node)):
        raise UserError(f"axis {path!r}: index {keys[-1]} is out of range")
    if not isinstance(node, (dict, list)):
        raise UserError(f"axis {path!r}: {type_name(node)} has no keys")
    node[keys[-1]] = list(value) if isinstance(value, tuple) else value


def check_axes(axes: dict[str, tuple], base: Any, base_dir: Path) -> None:
    """Refuse, before any run, an axis (path -> values) whose path leads nowhere in the base scenario."""
    for axis, values in axes.items():
        problem = path_problem(base, split_path(axis)) or unknown_leaf(base, base_dir, axis, values)
        if problem:
            raise UserError(f"axis {short(axis)!r}: {problem}")


def path_problem(data: Any, keys: list) -> str | None:
    """Why the path `keys` cannot be set in `data` (a key or index missing on the way), or None.

    The last key may be missing from its mapping: a scenario may set what its base leaves to the default."""
    node, where = data, ""
    for depth, key in enumerate(keys):
        here = where or "the base scenario"
        if isinstance(key, int):
            if not isinstance(node, list):
                return f"{here} is {type_name(node)}, not a list, so it has no [{key}]"
            if key >= len(node):
                return f"{here} has {len(node)} entr{'y' if len(node) == 1 else 'ies'}, so no [{key}]"
            where += f"[{key}]"
        else:
            if isinstance(node, list):
                return f"{here} is a list of {len(node)}; index it as {short(where)}[i]"
            if not isinstance(node, dict):
                return f"{here} is {type_name(node)}, which has no keys"
            if key not in node:
                return None if depth == len(keys) - 1 else missing_key(here, key, node)
            where = f"{where}.{key}" if where else key
        node = node[key]
    return None


def missing_key(where: str, key: str, node: dict) -> str:
    return f"{short(where)} has no key {short(key)!r} (it has: {short(', '.join(map(str, node))) or 'none'})"


def unknown_leaf(base: dict, base_dir: Path, axis: str, values: tuple) -> str | None:
    """For an axis that adds a key its base lacks: why, when the scenario format knows no such key there."""
    keys = split_path(axis)
    parent = base
    for key in keys[:-1]:
        parent = parent[key]
    if not isinstance(keys[-1], str) or keys[-1] in parent:
        return None
    baseline = scenario_problem(base, base_dir)
    for value in values:
        data = copy.deepcopy(base)
        set_path(data, axis, value)
        problem = scenario_problem(data, base_dir)
        if problem is None:
            return None
        if problem != baseline and ("unknown key" in problem or " takes no --" in problem):  # a key, or a knob
            return missing_key(path_text(keys[:-1]) or "the base scenario", keys[-1], parent) + \
                " and a scenario has no such key there"
    return None


def scenario_problem(data: dict, base_dir: Path) -> str | None:
    """The scenario format's objection to `data`, or None (also when it fails another way)."""
    from emulator.engine.scenario import scenario_from_data

    try:
        scenario_from_data(data, str(base_dir), "axis")
    except UserError as e:
        return str(e)
    except (ValueError, RuntimeError, OSError, LookupError, TypeError):
        pass
    return None


def read_base(path: Path, base: str):
    """The base scenario a sweep or search file at `path` names, read as YAML; a bad one in one line."""
    try:
        return read_yaml(path.parent / base, "base scenario")
    except UserError as e:
        raise UserError(f"{path}: base scenario {clip(base, 60)!r}: {e}") from None


def load_sweep(path: str | Path) -> tuple[SweepFile, dict, Path]:
    """The sweep, its base scenario's YAML data, and the base's directory."""
    path = Path(path)
    data = read_yaml(path, "sweep")  # bounded: an alias bomb is refused before it grows
    try:
        sweep = parse(SweepFile, data, "sweep")
        if not sweep.axes:
            fail("sweep.axes", "at least one axis is needed")
        for axis, values in sweep.axes.items():
            if not values:
                fail(f"sweep.axes.{axis}", "needs at least one value")
            split_path(axis)
        if sweep.sampling == "random" and sweep.count is None:
            fail("sweep.count", "missing (needed by random sampling)")
    except UserError as e:
        raise UserError(f"{path}: {str(e).removeprefix('sweep.')}") from None
    base_path = path.parent / sweep.base
    base = read_base(path, sweep.base)
    if sweep.policies is not None:
        if not isinstance(base, dict) or not isinstance(base.get("policies"), list):
            raise UserError(f"{path}: base scenario {sweep.base!r} has no list of policies")
        named = {p.get("name", p.get("policy")): p for p in base["policies"] if isinstance(p, dict)}
        missing = [n for n in sweep.policies if n not in named]
        if missing:
            raise UserError(f"{path}: policies {missing} are not in {sweep.base} (it has {', '.join(named)})")
        base["policies"] = [named[n] for n in sweep.policies]
    try:
        check_axes(sweep.axes, base, base_path.parent)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    return sweep, base, base_path.parent


def expand(sweep: SweepFile) -> list[Run]:
    """Every run: axis combinations (all, or `count` drawn without replacement) times seeds."""
    axes = list(sweep.axes)
    combos = list(itertools.product(*(sweep.axes[a] for a in axes)))
    if sweep.sampling == "random":
        rng = np.random.default_rng(sweep.seeds[0])
        picks = rng.choice(len(combos), size=min(sweep.count, len(combos)), replace=False)
        combos = [combos[i] for i in sorted(picks)]
    runs = []
    for combo in combos:
        for seed in sweep.seeds:
            runs.append(Run(len(runs), seed, tuple(zip(axes, combo))))
    return runs


def run_one(base: dict, base_dir: str, run: Run, sweep_name: str) -> list[dict]:
    """Simulate one run (every policy of the base): rows of the table, or one row with the error."""
    from emulator.engine.scenario import scenario_from_data
    from emulator.engine.simulate import run_scenario

    head = {"run_id": run.run_id, "seed": run.seed, **dict(run.values)}
    try:
        data = copy.deepcopy(base)
        for axis, value in run.values:
            set_path(data, axis, value)
        data["name"] = f"{sweep_name}-{run.run_id}"
        data["seed"] = run.seed
        scenario = scenario_from_data(data, base_dir, f"run {run.run_id}")
        summaries = run_scenario(scenario, None)
    except (UserError, RuntimeError, ValueError) as e:
        return [{**head, "policy": "", "error": str(e).splitlines()[0][:300]}]
    rows = []
    for s in summaries:
        row = {**head, "policy": s["policy"], "error": ""}
        row.update(metric_values(s, COST_METRICS))
        row.update(metric_values(s))
        rows.append(row)
    return rows


def columns(sweep: SweepFile) -> list[str]:
    return ["run_id", "seed", *sweep.axes, "policy", "error", *COST_COLUMNS, *COLUMNS]


def finished_runs(path: Path, cols: list[str]) -> set[int]:
    """Runs whose rows are all in the file; a line cut short by an interruption is dropped from it."""
    if not path.is_file() or path.stat().st_size == 0:
        return set()
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != cols:
            raise UserError(f"{path}: written by a different sweep (columns differ); use another --out")
        rows = list(reader)
    complete = [r for r in rows if r.get(cols[-1]) is not None and (r.get("run_id") or "").isdigit()]
    if len(complete) != len(rows):
        write_atomically(path, csv_text(cols, complete, header=True))
    return {int(r["run_id"]) for r in complete}


def short(value: Any, limit: int = 60) -> str:
    """A value's text, cut to about `limit` characters (head ... tail) for a one-line message."""
    text = str(value)
    if len(text) <= limit:
        return text
    keep = (limit - 3) // 2
    return f"{text[:keep]}...{text[-keep:]}"


def project_version() -> str:
    """The installed emulator's version, else the one in the checkout's pyproject.toml."""
    try:
        return importlib.metadata.version("genai-emulator")
    except importlib.metadata.PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    found = re.search(r'^version\s*=\s*"([^"]+)"', pyproject.read_text(), re.M) if pyproject.is_file() else None
    return found.group(1) if found else "unknown"


def resolved_spec(sweep: SweepFile, base: dict) -> dict:
    """Everything that decides the rows, as plain JSON data: the base scenario's content, the axes in order
    with their values, the seeds, policies, sampling and the project version."""
    return plain({
        "version": project_version(),
        "base": base,
        "axes": [[axis, list(values)] for axis, values in sweep.axes.items()],
        "policies": sweep.policies,
        "sampling": sweep.sampling,
        "count": sweep.count if sweep.sampling == "random" else None,
        "seeds": sweep.seeds,
    })


def plain(value: Any) -> Any:
    """YAML data as JSON data: tuples become lists, mapping keys strings, anything else its repr."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def fingerprint(spec: dict) -> str:
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def make_out(out: Path) -> None:
    """Create the results folder, or say in one line why it cannot be one."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {short(out)}: is a file, not a folder; give a folder (new or from this sweep)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {short(out)}: cannot create this folder ({e.strerror or e})") from None


def claim_out(out: Path, spec: dict) -> None:
    """Record the specification beside results.csv, or refuse a folder whose rows another one wrote."""
    path, mark = out / SPEC_FILE, fingerprint(spec)
    stored = read_spec(path)
    if (out / "results.csv").exists():
        problem = mismatch(stored, spec, mark)
        if problem:
            raise UserError(f"{short(out)}: {problem}, so it is not resumed; to start fresh, use a new --out "
                            f"or delete {short(out)}")
    if stored is None or stored.get("fingerprint") != mark:
        write_atomically(path, json.dumps({"fingerprint": mark, "spec": spec}, indent=1, sort_keys=True) + "\n")


def read_spec(path: Path) -> dict | None:
    """The stored fingerprint and specification; None when there is none, {} when it cannot be read."""
    if not path.exists():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return stored if isinstance(stored, dict) else {}


def mismatch(stored: dict | None, spec: dict, mark: str) -> str | None:
    """Why rows written under `stored` do not belong to `spec`, or None when they do."""
    if stored is None:
        return f"its results.csv has no {SPEC_FILE} beside it to show which sweep wrote it"
    if stored.get("fingerprint") == mark:
        return None
    old = stored.get("spec") if isinstance(stored.get("spec"), dict) else {}
    changed = [key for key in spec if old.get(key) != spec[key]]
    return f"it holds results of a different sweep ({', '.join(changed) or 'specification'} changed)"


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` in one step: an interruption leaves the old file or the new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text, newline="")
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"{short(path)}: cannot be written ({e.strerror or e})") from None


def execute(sweep: SweepFile, base: dict, base_dir: Path, out: Path, workers: int | None = None,
            ray_address: str | None = None, progress: bool = True) -> Path:
    """Run every unfinished run, appending rows to out/results.csv; returns that path (sorted at the end)."""
    make_out(out)
    claim_out(out, resolved_spec(sweep, base))
    results = out / "results.csv"
    runs = expand(sweep)
    cols = columns(sweep)
    done = finished_runs(results, cols)
    todo = [r for r in runs if r.run_id not in done]
    if done and progress:
        print(f"{sweep.name}: {len(done)} of {len(runs)} runs already in {results}; running the other "
              f"{len(todo)}", file=sys.stderr)
    try:
        append_runs(results, cols, run_all(todo, base, str(base_dir), sweep.name, workers, ray_address),
                    progress_bar(len(todo), sweep.name, progress))
    except KeyboardInterrupt:
        raise Interrupted(f"interrupted: {len(finished_runs(results, cols))} of {len(runs)} runs done; "
                               "run the same command again to resume") from None
    sort_results(results, cols)
    return results


def append_runs(results: Path, cols: list[str], finishing, bar: progress_bar) -> None:
    """Append each finished run's rows in one write, so that an interruption keeps whole runs."""
    new_file = not results.is_file() or results.stat().st_size == 0
    try:
        with open(results, "a", newline="") as f, closing(finishing):
            if new_file:
                f.write(csv_text(cols, [], header=True))
            for rows in finishing:
                f.write(csv_text(cols, rows))
                f.flush()
                bar.update(1)
    finally:
        bar.close()


def csv_text(cols: list[str], rows: list[dict], header: bool = False) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def run_all(todo: list[Run], base: dict, base_dir: str, name: str, workers: int | None, ray_address: str | None):
    """Yield each run's rows as it finishes: in this process, in a process pool, or as Ray tasks."""
    if ray_address:
        yield from run_ray(todo, base, base_dir, name, ray_address)
        return
    if workers == 1:
        for run in todo:
            yield run_one(base, base_dir, run, name)
        return
    yield from run_pool(todo, base, base_dir, name, workers)


def run_pool(todo: list[Run], base: dict, base_dir: str, name: str, workers: int | None):
    """The runs in a local process pool; stopping early (Ctrl-C, an error) ends the workers at once."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    pool = ProcessPoolExecutor(max_workers=workers, initializer=ignore_interrupts)
    try:
        futures = [pool.submit(run_one, base, base_dir, run, name) for run in todo]
        for future in as_completed(futures):
            yield future.result()
    except BaseException:  # KeyboardInterrupt, or GeneratorExit when the caller stops early
        stop_pool(pool)
        raise
    pool.shutdown()


def ignore_interrupts() -> None:
    """In a worker: Ctrl-C reaches the whole process group; the parent alone handles it, by ending the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stop_pool(pool) -> None:
    """Cancel the queued runs and end the running ones now, rather than wait for them to finish."""
    if hasattr(pool, "terminate_workers"):  # Python 3.14
        pool.terminate_workers()
        return
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=5)


def run_ray(todo: list[Run], base: dict, base_dir: str, name: str, address: str):
    try:
        import ray
    except ImportError:
        raise UserError("--ray needs Ray: pip install -e '.[ray]'") from None
    if not ray.is_initialized():
        ray.init(address=None if address == "auto" else address, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)
    task = ray.remote(run_one)
    base_ref = ray.put(base)
    pending = [task.remote(base_ref, base_dir, run, name) for run in todo]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        for ref in pending:  # stopped early: cancel what has not finished
            with suppress(Exception):
                ray.cancel(ref, force=True)


def read_table(path: Path):
    """The results as a pandas DataFrame: `error` is "" for runs that succeeded."""
    import pandas as pd

    table = pd.read_csv(path, dtype={"error": str, "policy": str})
    table["error"] = table["error"].fillna("")
    table["policy"] = table["policy"].fillna("")
    return table


def sort_results(path: Path, cols: list[str]) -> None:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    rows.sort(key=lambda r: (int(r["run_id"]), r["policy"]))
    write_atomically(path, csv_text(cols, rows, header=True))


class progress_bar:
    """tqdm where installed, else a plain count on stderr; silent when asked."""

    def __init__(self, total: int, name: str, show: bool):
        self.bar = None
        self.total, self.n, self.show = total, 0, show
        if show:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc=name, unit="run", file=sys.stderr)
            except ImportError:
                pass

    def update(self, k: int) -> None:
        self.n += k
        if self.bar is not None:
            self.bar.update(k)
        elif self.show:
            print(f"\r  {self.n}/{self.total} runs", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.show:
            print(file=sys.stderr)
