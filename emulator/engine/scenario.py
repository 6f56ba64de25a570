"""Scenario files: the typed, validated description of one emulated experiment.

A scenario names the device (a catalog name, whose shipped profile costs the
kernels, or a profile file), the attention implementation, the runtime (how
the model is run, `emulator.cost.runtime`: eager or cuda-graphs), the cluster (device
groups, which stages each serves, the router), the traffic classes, the
scheduling policies to compare, the seed, the horizon and the outputs. Every
defect a user can make ends in one line naming the key and the problem.

A traffic class's workload is a workload of the suite (`list`) or
`module:PRESET`, one call per request of a real model lowered from a module
preset (workloads.modules: flux.1-dev, wan2.1-t2v-14b, hunyuan-video-vae,
...), whose knobs are batch, image_size or height/width (pixels) and frames:
`workload: module:wan2.1-t2v-1.3b, knobs: {height: 480, width: 832, frames: 81}`.
A class may draw each request's prompt and output lengths from distributions
(`lengths`, `emulator.engine.lengths`) or take them from a trace's
prompt_tokens and output_tokens columns, and may set SLOs on time to first
token and time per output token (`ttft_slo_s`, `tpot_slo_s`) when its
workload has an autoregressive (KV-growing) stage. A class (or a device
group, for the classes it serves) may plan stages on gangs of GPUs
(`parallel: {transformer: "ulysses=4,cfg=2"}`), on a cluster cut into nodes
(`nodes`, `gpus_per_node`): `emulator.engine.topology`.

The input boundary: `read_yaml` refuses alias bombs and deep nesting while
composing, before any value is built; names that become folders must be one
safe path component; `check_seed` is the one rule for a seed, from a file or a
command line; and a scenario whose estimated work per policy exceeds
`limits.max_events` is refused before it runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from emulator.attention import ATTENTION_IMPLEMENTATIONS, DEFAULT_ATTENTION
from emulator.cost.runtime import CUDA_GRAPHS, DEFAULT_RUNTIME, RUNTIMES, runtime
from emulator.devices import DEFAULT_DEVICE, catalog, catalog_hint
from emulator.engine.lengths import LENGTH_KEYS, Lengths, bounds, check_dist, round_prompt
from emulator.engine.policies import POLICIES
from emulator.engine.topology import check_gangs, with_topology
from emulator.engine.schema import convert, fail, parse, type_name
from emulator.errors import UserError, clip, excerpt


SERVING_RUNTIME = CUDA_GRAPHS.name  # the default of a scenario with autoregressive traffic (with_serving_runtime)


@dataclass(frozen=True)
class Arrival:
    process: Literal["poisson", "fixed", "closed", "trace"]
    rate_per_s: float | None = field(default=None, metadata={"above": 0})  # poisson, fixed
    users: int | None = field(default=None, metadata={"min": 1})  # closed loop
    think_s: float = field(default=0.0, metadata={"min": 0})  # closed loop: mean think time (exponential)
    path: str | None = None  # trace: CSV with a time_s column, optionally class, prompt_tokens, output_tokens


@dataclass(frozen=True)
class TrafficClass:
    name: str
    workload: str  # a workload of the suite, or "module:PRESET": one call of a real model's module preset
    arrival: Arrival
    knobs: dict[str, int | bool | str] = field(default_factory=dict)  # image_size, frames, steps, ...
    slo_s: float | None = field(default=None, metadata={"above": 0})  # end to end: arrival to done
    max_requests: int | None = field(default=None, metadata={"min": 1})  # stop arriving after this many
    lengths: Lengths | None = None  # per-request prompt_tokens / output_tokens distributions
    ttft_slo_s: float | None = field(default=None, metadata={"above": 0})  # time to first token
    tpot_slo_s: float | None = field(default=None, metadata={"above": 0})  # time per output token
    parallel: dict[str, str] = field(default_factory=dict)  # stage name -> plan, "ulysses=4,cfg=2" (gangs)

    @property
    def module_preset(self) -> str | None:
        """PRESET of `workload: module:PRESET` (workloads.modules), else None."""
        return self.workload.removeprefix(MODULE_PREFIX) if self.workload.startswith(MODULE_PREFIX) else None

    def pipeline(self, lengths: dict | None = None):
        """The Pipeline of one request of this class (with these prompt/output `lengths`, if given)."""
        if self.module_preset is not None:
            from workloads.modules import preset_pipeline

            return preset_pipeline(self.module_preset, **self.knobs)
        from workloads import build

        return build(self.workload, **{**self.knobs, **(lengths or {})})


MODULE_PREFIX = "module:"


@dataclass(frozen=True)
class Group:
    name: str
    devices: int = field(default=1, metadata={"min": 1})
    stages: tuple[str, ...] | None = None  # stage names served here; None: every stage no other group claims
    device: str | None = None  # overrides the scenario's device
    price_per_hour_usd: float | None = field(default=None, metadata={"min": 0})  # per device; overrides the cluster's
    gpus_per_node: int | None = field(default=None, metadata={"min": 1})  # default: cluster's, else the catalog's
    parallel: dict[str, str] = field(default_factory=dict)  # stage name -> plan for every class served here


Router = Literal["round-robin", "least-loaded", "bucket-affinity"]
RuntimeName = Literal[tuple(RUNTIMES)]  # the registry's names: a wrong one is refused listing them
# Any registered implementation; the device's profile then refuses one it has no kernels for, listing its own.
AttentionName = Literal[(DEFAULT_ATTENTION,) + tuple(ATTENTION_IMPLEMENTATIONS)]


@dataclass(frozen=True)
class Cluster:
    devices: int = field(default=1, metadata={"min": 1})  # when no groups are given: one group of this many
    router: Router = "round-robin"
    groups: tuple[Group, ...] | None = None
    nodes: int | None = field(default=None, metadata={"min": 1})  # without groups: nodes x gpus_per_node devices
    gpus_per_node: int | None = field(default=None, metadata={"min": 1})  # default: the device catalog's
    price_per_hour_usd: float | None = field(default=None, metadata={"min": 0})  # per device; default: the catalog's


@dataclass(frozen=True)
class Output:
    dir: str | None = None  # default results/<scenario name>/
    timeseries_resolution_s: float | None = field(default=None, metadata={"above": 0})  # default horizon/500
    trace: bool = False


MAX_EVENTS = 100_000_000
MAX_SEED = 2**32 - 1  # numpy's generators take any non-negative seed; 32 bits keep one short to quote
SEED_BOUNDS = {"min": 0, "max": MAX_SEED}
SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")  # one folder of the results, on any file system


@dataclass(frozen=True)
class Limits:
    # Estimated engine events per policy: every request's stage calls, plus timeseries bins x devices.
    max_events: int = field(default=MAX_EVENTS, metadata={"min": 1})


@dataclass(frozen=True)
class PolicySpec:
    name: str  # label in the outputs
    policy: str  # key of POLICIES
    params: Any  # the policy's Params dataclass
    router: str | None = None  # overrides cluster.router for this policy (e.g. buckets on dedicated devices)


@dataclass(frozen=True)
class Scenario:
    name: str
    traffic: tuple[TrafficClass, ...]
    policies: tuple[PolicySpec, ...]
    seed: int = field(default=0, metadata=SEED_BOUNDS)
    device: str = DEFAULT_DEVICE
    attention: AttentionName = DEFAULT_ATTENTION  # 'default': the profile's default per attention shape class
    runtime: RuntimeName = DEFAULT_RUNTIME  # how the model is run: a key of emulator.cost.runtime.RUNTIMES
    horizon_s: float = field(default=60.0, metadata={"above": 0})  # arrivals stop here
    drain: bool = True  # after the horizon, run until every admitted request completes
    cluster: Cluster = field(default_factory=Cluster)
    output: Output = field(default_factory=Output)
    limits: Limits = field(default_factory=Limits)
    base_dir: str = field(default=".", compare=False, metadata={"internal": True})  # where relative paths resolve

    @property
    def groups(self) -> tuple[Group, ...]:
        return self.cluster.groups or (Group("all", self.cluster.devices, gpus_per_node=self.cluster.gpus_per_node),)

    @property
    def resolution_s(self) -> float:
        return self.output.timeseries_resolution_s or self.horizon_s / 500


def check_seed(value: Any, where: str = "seed") -> int:
    """A seed from a scenario (an integer) or a command line (its decimal text), from 0 to MAX_SEED;
    anything else is a one-line UserError naming `where` (e.g. `--seed: must be >= 0, got -1`)."""
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?[0-9]{1,30}", text):
            value = int(text)
        elif re.fullmatch(r"[+-]?[0-9]+", text):  # too many digits to be a seed: no need to convert them
            fail(where, f"must be <= {MAX_SEED}, got {excerpt(text)}")
    return convert(int, value, where, SEED_BOUNDS)


def check_name(name: Any, where: str) -> None:
    """A name that becomes one folder under the results: refuses '..', '/' and the like."""
    if not isinstance(name, str) or not SAFE_NAME.fullmatch(name) or name in (".", ".."):
        fail(where, "must be a folder name of up to 100 letters, digits, '-', '_' or '.' (not '.' or '..'), "
                    f"got {excerpt(name)}")


def parse_policies(items: Any) -> tuple[PolicySpec, ...]:
    if not isinstance(items, list):
        fail("policies", f"must be a list of policies, got {type_name(items)}")
    if not items:
        fail("policies", "at least one policy is needed")
    specs, names = [], set()
    for i, item in enumerate(items):
        where = f"policies[{i}]"
        if not isinstance(item, dict):
            fail(where, f"must be a mapping, got {type_name(item)}")
        if "policy" not in item:
            fail(f"{where}.policy", f"missing; choose one of: {', '.join(POLICIES)}")
        kind = item["policy"]
        if not isinstance(kind, str) or kind not in POLICIES:
            fail(f"{where}.policy", f"unknown policy {excerpt(kind)}; choose one of: {', '.join(POLICIES)}")
        name = item.get("name", kind)
        check_name(name, f"{where}.name")
        if name in names:
            fail(f"{where}.name", f"{excerpt(name)} is used by another policy")
        names.add(name)
        router = convert(Router | None, item.get("router"), f"{where}.router")
        rest = {k: v for k, v in item.items() if k not in ("policy", "name", "router")}
        params = parse(POLICIES[kind].Params, rest, where)
        problem = params.problem() if hasattr(params, "problem") else None
        if problem:
            fail(where, problem)
        specs.append(PolicySpec(name, kind, params, router))
    return tuple(specs)


def check_cross_fields(s: Scenario) -> None:
    """Checks that span several keys: arrivals, workloads and knobs, devices, stage placement, work."""
    names = set()
    trace_rows = []
    for i, t in enumerate(s.traffic):
        if t.name in names:
            fail(f"traffic[{i}].name", f"{excerpt(t.name)} is used by another traffic class")
        names.add(t.name)
        trace_rows.append(check_arrival(s, t, f"traffic[{i}].arrival"))
        check_knobs(t, f"traffic[{i}]")
        check_lengths(s, t, f"traffic[{i}]")
        check_token_slos(t, f"traffic[{i}]")
    models = check_devices(s)
    if s.cluster.groups:
        seen = set()
        for i, g in enumerate(s.cluster.groups):
            if g.name in seen:
                fail(f"cluster.groups[{i}].name", f"{excerpt(g.name)} is used by another group")
            seen.add(g.name)
        if sum(g.stages is None for g in s.cluster.groups) > 1:
            fail("cluster.groups", "at most one group may leave out stages (it serves the rest)")
    check_work(s, trace_rows, models)


def check_arrival(s: Scenario, t: TrafficClass, where: str) -> int:
    """The arrival's process has what it needs; a trace is read through now. Returns a trace's rows."""
    from emulator.engine.arrivals import trace_gaps

    a = t.arrival
    needs = {"poisson": "rate_per_s", "fixed": "rate_per_s", "closed": "users", "trace": "path"}[a.process]
    if getattr(a, needs) is None:
        fail(f"{where}.{needs}", f"missing (needed by process {a.process})")
    if a.process != "trace":
        return 0
    if not is_file(Path(s.base_dir) / a.path):
        fail(f"{where}.path", f"no such file {excerpt(a.path)}")
    return sum(1 for _ in trace_gaps(Path(s.base_dir) / a.path, t.name))  # a bad row fails now, not mid-run


def check_knobs(t: TrafficClass, where: str) -> None:
    from workloads import get

    if t.module_preset is not None:  # preset and knobs checked without building the model
        from workloads.modules import ALL_PRESETS, PRESET_KNOBS, module_size

        if t.module_preset not in ALL_PRESETS:
            fail(f"{where}.workload", f"unknown module preset {excerpt(t.module_preset)}; choose one of: "
                                      f"{', '.join(ALL_PRESETS)}")
        unknown = [k for k in t.knobs if k not in PRESET_KNOBS]
        if unknown:
            fail(f"{where}.knobs", f"unknown knob {excerpt(unknown[0])}; a module preset takes {', '.join(PRESET_KNOBS)}")
        side = t.knobs.get("image_size")
        try:
            module_size(ALL_PRESETS[t.module_preset][0], t.knobs.get("height", side), t.knobs.get("width", side),
                        t.knobs.get("frames"))
        except UserError as e:
            fail(f"{where}.knobs", str(e).replace("--", ""))
        return
    try:
        get(t.workload).config(**t.knobs)
    except UserError as e:
        fail(where, str(e))
    except TypeError:
        from workloads.config import KNOBS

        fail(f"{where}.knobs", f"unknown knob; knobs are {', '.join(KNOBS)}")


def length_ranges(s: Scenario, t: TrafficClass) -> dict[str, tuple[int, int, float]]:
    """{length name: (smallest, largest, typical)} a class's requests take from its lengths and its trace's
    columns (prompts rounded); empty when its lengths are its knobs'."""
    from emulator.engine.arrivals import trace_rows

    out = {}
    spec = t.lengths or Lengths()
    for key in LENGTH_KEYS:
        d = getattr(spec, key)
        if d is not None:
            low, high, typical = bounds(d, key, s.base_dir)
            if key == "prompt_tokens":
                low, high = (round_prompt(v, spec.prompt_round_to, d) for v in (low, high))
            out[key] = (low, high, typical)
    if t.arrival.process == "trace":
        drawn = set(out)
        for _, given in trace_rows(Path(s.base_dir) / t.arrival.path, t.name, spec.prompt_round_to):
            for key, v in given.items():
                low, high, typical = out.get(key, (v, v, v))
                out[key] = (min(low, v), max(high, v), typical)
        for key in set(out) - drawn:  # a blank cell takes the knob (or the workload's default)
            v = t.pipeline().params.get(key)
            if v is not None:
                out[key] = (min(out[key][0], v), max(out[key][1], v), out[key][2])
    return out


def typical_lengths(s: Scenario, t: TrafficClass) -> dict[str, int]:
    """A class's typical prompt and output lengths (for estimates), its knobs' where it draws none."""
    return {key: max(1, round(typical)) for key, (_, _, typical) in length_ranges(s, t).items()}


def check_lengths(s: Scenario, t: TrafficClass, where: str) -> None:
    """Lengths apply to a workload with those knobs, not also set as knobs; the longest fit the context."""
    if t.lengths is not None:
        for key in LENGTH_KEYS:
            d = getattr(t.lengths, key)
            if d is not None:
                check_dist(d, f"{where}.lengths.{key}", s.base_dir)
                if key in t.knobs:
                    fail(f"{where}.lengths.{key}", "also set in knobs; set it in one place")
    ranges = length_ranges(s, t)
    if not ranges:
        return
    if t.module_preset is not None:
        fail(f"{where}.lengths", "module presets take no prompt_tokens or output_tokens")
    from workloads import get

    try:
        get(t.workload).config(**{**t.knobs, **{key: high for key, (_, high, _) in ranges.items()}})
    except UserError as e:
        fail(f"{where}.lengths", f"the longest lengths: {str(e).replace('--', '').replace('-tokens', '_tokens')}")
    if ranges.get("output_tokens", (2,))[0] < 2 and autoregressive(t):
        fail(f"{where}.lengths.output_tokens", "must be >= 2 (one token is a prefill without decode)")


def autoregressive(t: TrafficClass) -> bool:
    """Whether a request of the class runs a KV-growing (autoregressive) stage."""
    return any(st.kv_growth for st in t.pipeline().stages)


def with_serving_runtime(s: Scenario, named: bool) -> Scenario:
    """A scenario that names no runtime runs as LLM serving engines run: `cuda-graphs` when some traffic class
    decodes autoregressively and every device has a host of its own (a CPU has none), else `eager`."""
    from dataclasses import replace

    from emulator.cost import cost_model

    if named:
        return s
    specs = {g.device or s.device for g in s.groups}
    if not all(x in catalog() or x.endswith(".json") or is_file(Path(x)) for x in specs):
        return s  # check_devices names the unknown device
    try:
        decodes = any(autoregressive(t) for t in s.traffic)
        devices = [catalog()[x] if x in catalog() else cost_model(resolve_path(s, x), s.attention).device
                   for x in specs]
    except UserError:
        return s  # check_cross_fields names the defect
    return replace(s, runtime=SERVING_RUNTIME) if decodes and not any(d.synchronous for d in devices) else s


def check_token_slos(t: TrafficClass, where: str) -> None:
    for key in ("ttft_slo_s", "tpot_slo_s"):
        if getattr(t, key) is not None and not autoregressive(t):
            fail(f"{where}.{key}", f"{excerpt(t.workload)} has no autoregressive (KV-growing) stage")


def check_devices(s: Scenario) -> list:
    """Every group's device loads and can run the scenario's runtime; returns their cost models."""
    from emulator.cost import cost_model

    models = []
    for i, g in enumerate(s.groups):
        spec = g.device or s.device
        where = f"cluster.groups[{i}].device" if g.device else "device"
        if not spec.endswith(".json") and spec not in catalog() and not is_file(Path(spec)):
            fail(where, f"unknown device {excerpt(spec)}; {catalog_hint()}")
        try:
            models.append(cost_model(resolve_path(s, spec), s.attention))
        except UserError as e:
            fail(where, str(e))
        try:
            runtime(s.runtime).check(models[-1])
        except UserError as e:
            fail("runtime", str(e))
    return models


def check_work(s: Scenario, trace_rows: list[int], models: list) -> None:
    """Refuses a scenario whose estimated engine events per policy exceed limits.max_events."""
    from emulator.engine.arrivals import expected_requests

    parts = []
    for i, t in enumerate(s.traffic):
        stages = t.pipeline(typical_lengths(s, t)).stages
        calls = sum(st.calls for st in stages)
        n = expected_requests(t.arrival, s.horizon_s, t.max_requests, trace_rows[i],
                              lambda stages=stages: request_lower_bound_s(stages, models, runtime(s.runtime)))
        parts.append((n * calls, f"traffic[{i}]: {n:.3g} requests x {calls} stage calls"))
    devices = sum(g.devices for g in s.groups)
    bins = s.horizon_s / s.resolution_s + 1  # a float: an absurd horizon gives inf, not an OverflowError
    parts.append((devices * bins, f"{bins:.3g} timeseries bins x {devices} devices"))
    total = sum(n for n, _ in parts)
    if total > s.limits.max_events:
        _, biggest = max(parts)
        raise UserError(f"estimated {total:.3g} engine events per policy ({biggest}) exceed limits.max_events "
                        f"= {s.limits.max_events}; set limits: {{max_events: N}} to allow more")


def request_lower_bound_s(stages, models: list, run_as) -> float:
    """Seconds one request takes at least: every stage call as fast as its first, on the fastest device."""
    from emulator.cost.timeline import GraphCoster

    def first_call_s(stage, model) -> float:
        return GraphCoster(stage.graph(), model, model.device.synchronous, run_as).call().seconds

    return sum(st.calls * min(first_call_s(st, m) for m in models) for st in stages)


def is_file(path: Path) -> bool:
    """Whether `path` names a file; a name too long or otherwise impossible names none."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def node_gpus(s: Scenario, spec: str) -> int:
    """The catalog's gpus_per_node of a device spec (a catalog name or a profile file); 8 where the device
    cannot be read (check_devices then refuses it)."""
    from emulator.cost import cost_model

    try:
        return cost_model(resolve_path(s, spec), s.attention).device.gpus_per_node
    except (UserError, OSError, ValueError):
        return 8


def resolve_path(s: Scenario, spec: str) -> str:
    """A device spec: a catalog name as is, a profile path relative to the scenario file."""
    if spec.endswith(".json"):
        return str(Path(s.base_dir) / spec)
    return spec


MAX_ALIASES = 100  # alias events (*name) a file may use
MAX_VALUES = 100_000  # values of the document with every alias expanded
MAX_DEPTH = 100  # nesting of lists and mappings


class Refused(yaml.YAMLError):
    """A document past the loader's bounds: refused before its values are built."""


class BoundedLoader(yaml.SafeLoader):
    """A SafeLoader that refuses, while composing and so before any value is built, a document whose
    aliases would expand past MAX_VALUES values or that uses more than MAX_ALIASES aliases."""

    def __init__(self, stream):
        super().__init__(stream)
        self.aliases = 0
        self.depth = 0
        self.expanded: dict[int, int] = {}  # id(node) -> values it stands for, aliases expanded

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            return self.compose_alias(parent, index)
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise Refused(f"nested more than {MAX_DEPTH} levels deep")
        node = super().compose_node(parent, index)
        self.depth -= 1
        children = node.value if isinstance(node, yaml.SequenceNode) else (
            [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else [])
        size = 1 + sum(self.expanded[id(c)] for c in children)
        if size > MAX_VALUES:
            raise Refused(f"its aliases expand to more than {MAX_VALUES} values")
        self.expanded[id(node)] = size
        return node

    def compose_alias(self, parent, index):
        self.aliases += 1
        if self.aliases > MAX_ALIASES:
            raise Refused(f"more than {MAX_ALIASES} aliases (*name)")
        target = self.anchors.get(self.peek_event().anchor)
        if target is not None and id(target) not in self.expanded:
            raise Refused("an alias inside the value it names (a recursive alias)")
        return super().compose_node(parent, index)


def read_yaml(path: str | Path, what: str = "scenario") -> Any:
    """The data of a YAML file through BoundedLoader; any defect is a one-line UserError naming the file."""
    path = Path(path)
    try:
        return yaml.load(path.read_text(), Loader=BoundedLoader)  # noqa: S506 (a SafeLoader)
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what} file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    except Refused as e:
        raise UserError(f"{path}: refused: {e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    except ValueError as e:  # an integer too long to convert
        raise UserError(f"{path}: not valid YAML ({clip(str(e), 80)})") from None


def load_scenario(path: str | Path) -> Scenario:
    return scenario_from_data(read_yaml(path), str(Path(path).parent), str(path))


def scenario_from_data(data: Any, base_dir: str = ".", where: str = "scenario") -> Scenario:
    try:
        if not isinstance(data, dict):
            fail("scenario", f"must be a mapping, got {type_name(data)}")
        if "base_dir" in data:
            fail("base_dir", "unknown key")
        if "policies" not in data:
            fail("policies", "missing")
        specs = parse_policies(data["policies"])
        s = parse(Scenario, {**data, "base_dir": base_dir}, "scenario", parsed={"policies": specs})
        s = with_serving_runtime(s, "runtime" in data)
        check_name(s.name, "name")
        if not s.traffic:
            fail("traffic", "at least one traffic class is needed")
        s = with_topology(s, lambda spec: node_gpus(s, spec))
        check_cross_fields(s)
        check_gangs(s, lambda spec: node_gpus(s, spec))
        return s
    except UserError as e:
        message = str(e).removeprefix("scenario.")
        raise UserError(f"{where}: {message}") from None
