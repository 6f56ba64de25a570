"""The pods policy passes plain call boundaries inside one simulated wait: its outputs stay byte-identical.

Each scenario runs twice, with `COALESCE` off (one SimPy timeout per call
boundary, every record made when the simulation reaches it) and on; the
summary, requests.csv and timeseries.csv must be equal byte for byte. The
horizons fall inside a time bin, so records passed beyond the horizon must be
dropped, and one class follows a per-call schedule (guidance on part of the
steps), whose calls differ in kernels and fallback ops.
"""

from __future__ import annotations

import pytest

from emulator.engine.policies import pods
from emulator.engine.scenario import scenario_from_data
from emulator.engine.simulate import run_scenario

SD = {"image_size": 256, "steps": 12}


def sd_traffic(rate: float, **knobs) -> dict:
    return {"name": "sd", "workload": "stable-diffusion", "knobs": {**SD, **knobs},
            "arrival": {"process": "poisson", "rate_per_s": rate}}


def outputs(tmp_path, name: str, data: dict, coalesce: bool, monkeypatch) -> dict:
    monkeypatch.setattr(pods, "COALESCE", coalesce)
    passed = []
    next_call = pods.Pods.next_call
    monkeypatch.setattr(pods.Pods, "next_call", staticmethod(lambda m, now: passed.append(now) or next_call(m, now)))
    out = tmp_path / name
    run_scenario(scenario_from_data(data), out)
    files = {f"{p}/{f}": (out / p / f).read_bytes()
             for p in [x["name"] for x in data["policies"]] for f in ("summary.json", "requests.csv", "timeseries.csv")}
    return files, len(passed)


CASES = {
    "two-devices-pods-of-2": ({"devices": 2}, [sd_traffic(6.0)], {"pod_size": 2, "stagger": 0.5}, 6.37, 0.5),
    "pods-of-3-scheduled": ({"devices": 1}, [sd_traffic(3.0), {**sd_traffic(2.0, cfg_steps="0:4"), "name": "cfg"}],
                            {"pod_size": 3, "stagger": 0.25}, 5.81, 0.25),
    # members that end together, the first of them leaving (configs/pods.yaml at seed 0)
    "synchronized-pods-of-4": ({"devices": 1}, [sd_traffic(0.8, image_size=512, steps=50)], {"pod_size": 4, "stagger": 0.0},
                               10.0, 1.0),
    "pods-of-1": ({"devices": 1}, [sd_traffic(4.0)], {"pod_size": 1}, 4.03, 1.0),
}


@pytest.mark.parametrize("case", CASES)
def test_coalesced_pods_write_the_same_outputs(tmp_path, monkeypatch, case):
    cluster, traffic, params, horizon_s, resolution_s = CASES[case]
    data = {"name": "coalesce", "seed": 0, "device": "a100-sxm4-80gb", "attention": "flash", "horizon_s": horizon_s, "drain": False, "cluster": cluster, "traffic": traffic,
            "policies": [{"name": "p", "policy": "pods", **params}],
            "output": {"timeseries_resolution_s": resolution_s}}
    one_by_one, none = outputs(tmp_path, "off", data, False, monkeypatch)
    coalesced, passed = outputs(tmp_path, "on", data, True, monkeypatch)
    assert none == 0 and passed > 0  # the second run did pass boundaries
    assert coalesced == one_by_one


def test_a_drained_run_writes_the_same_outputs(tmp_path, monkeypatch):
    data = {"name": "drained", "horizon_s": 2.0, "drain": True, "cluster": {"devices": 1},
            "traffic": [sd_traffic(5.0)], "policies": [{"name": "p", "policy": "pods", "pod_size": 2}],
            "output": {"timeseries_resolution_s": 0.5}}
    one_by_one, _ = outputs(tmp_path, "off", data, False, monkeypatch)
    coalesced, passed = outputs(tmp_path, "on", data, True, monkeypatch)
    assert passed > 0
    assert coalesced == one_by_one
