"""Scenario files: valid ones load into typed objects, malformed ones end in one line naming the key."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.engine.scenario import load_scenario, scenario_from_data
from emulator.errors import UserError

ROOT = Path(__file__).parents[1]
BASE = {
    "name": "t",
    "horizon_s": 10,
    "cluster": {"devices": 2, "router": "least-loaded"},
    "traffic": [{"name": "sd", "workload": "stable-diffusion", "knobs": {"image_size": 512},
                 "arrival": {"process": "poisson", "rate_per_s": 1.0}, "slo_s": 5}],
    "policies": [{"policy": "fcfs"}, {"name": "p", "policy": "pods", "pod_size": 2, "stagger": 0.5},
                 {"policy": "buckets", "edges": [1024, 4096]}],
}


def test_a_valid_scenario_loads_typed():
    s = scenario_from_data(copy.deepcopy(BASE))
    assert s.traffic[0].arrival.rate_per_s == 1.0 and s.cluster.devices == 2
    assert [p.name for p in s.policies] == ["fcfs", "p", "buckets"]
    assert s.policies[1].params.stagger == 0.5 and s.policies[2].params.edges == (1024, 4096)


def change(data, path, value):
    """Set the value at a path of keys and indexes, or delete it when value is KeyError."""
    node = data
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value


def with_change(path, value):
    data = copy.deepcopy(BASE)
    change(data, path, value)
    return data


@pytest.mark.parametrize("path,value,message", [
    (("traffic", 0, "knobz"), {}, "traffic[0].knobz: unknown key"),
    (("horizon_s",), "long", "horizon_s: must be a finite number, got 'long'"),
    (("traffic", 0, "arrival", "rate_per_s"), -1, "traffic[0].arrival.rate_per_s: must be > 0, got -1"),
    (("traffic", 0, "arrival", "rate_per_s"), KeyError, "traffic[0].arrival.rate_per_s: missing"),
    (("traffic", 0, "workload"), "dalle", "traffic[0]: unknown workload 'dalle'"),
    (("traffic", 0, "knobs", "image_size"), 300, "traffic[0]: --image-size 300 is not valid"),
    (("traffic", 0, "knobs", "frames"), 8, "traffic[0]: stable-diffusion takes no --frames"),
    (("policies", 0, "policy"), "lottery", "policies[0].policy: unknown policy 'lottery'"),
    (("policies", 1, "stagger"), 1.5, "policies[1].stagger: must be <= 1, got 1.5"),
    (("policies", 2, "edges"), [4096, 1024], "policies[2]: edges must increase"),
    (("policies", 1, "name"), "fcfs", "policies[1].name: 'fcfs' is used by another policy"),
    (("device",), "tpu-v9", "device: unknown device 'tpu-v9'"),
    (("cluster", "router"), "random", "cluster.router: must be one of"),
    (("drain",), "yes", "drain: must be true or false, got 'yes'"),
    (("runtime",), "jit", "runtime: must be one of 'eager', 'cuda-graphs', got 'jit'"),
    (("runtime",), 3, "runtime: must be one of 'eager', 'cuda-graphs', got 3"),
])
def test_malformed_scenarios_name_the_key_and_the_problem(path, value, message):
    with pytest.raises(UserError) as e:
        scenario_from_data(with_change(path, value), where="s.yaml")
    assert str(e.value).startswith("s.yaml: " + message), str(e.value)
    assert "\n" not in str(e.value)


def paths(data, prefix=()):
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from paths(v, (*prefix, i))


ALL_PATHS = [p for p in paths(BASE) if p]
junk = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), junk | st.just(KeyError)), min_size=1, max_size=3))
def test_fuzzed_scenarios_load_or_fail_with_one_line(changes):
    data = copy.deepcopy(BASE)
    for path, value in changes:
        try:
            change(data, path, value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    try:
        scenario_from_data(data)
    except UserError as e:
        assert "\n" not in str(e)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_any_text_file_loads_or_fails_with_one_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("f") / "s.yaml"
    path.write_text(text)
    try:
        load_scenario(path)
    except UserError as e:
        assert "\n" not in str(e) and str(e).startswith(str(path))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "emulator", *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_run_reports_a_bad_file_in_one_line_with_exit_code_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_change(("policies", 1, "pod_size"), 0)))
    out = cli("run", str(bad))
    assert out.returncode == 2
    assert out.stderr.strip() == f"error: {bad}: policies[1].pod_size: must be >= 1, got 0"


@pytest.mark.parametrize("config", ["pods", "buckets", "llm-decode", "llm-lengths"])
def test_shipped_scenarios_run_and_write_their_outputs(tmp_path, config):
    out = cli("run", str(ROOT / "configs" / f"{config}.yaml"), "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    s = load_scenario(ROOT / "configs" / f"{config}.yaml")
    for p in s.policies:
        for f in ("summary.json", "requests.csv", "timeseries.csv"):
            assert (tmp_path / p.name / f).is_file()
        assert p.name in out.stdout
    assert (tmp_path / "comparison.csv").read_text().count("\n") == len(s.policies) + 1


def test_a_bad_trace_row_fails_at_load_naming_its_line(tmp_path):
    (tmp_path / "t.csv").write_text("time_s\n0.5\n0.25\n")
    data = copy.deepcopy(BASE)
    data["traffic"][0]["arrival"] = {"process": "trace", "path": "t.csv"}
    with pytest.raises(UserError, match=r"t.csv:3: time_s must not decrease"):
        scenario_from_data(data, str(tmp_path))
