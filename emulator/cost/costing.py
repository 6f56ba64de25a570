"""Seconds per stage call and per request, the choice of cost model by name, and where its times come from.

Scenario files and the command line name a cost model by a string, so one
function resolves it: `cost_model("a100-sxm4-80gb")` is the profile the
catalog ships for that device (or its datasheet roofline when none is shipped
or `roofline=True`); `cost_model("path/to/profile.json")` loads that profile.
`cost_source` says, for the same string, where the kernel times come from: a
measured profile (its date and device fingerprint), a derived one, or the
datasheet roofline (uncalibrated), and for a profile where each kind comes
from and the default attention per shape class; `source_text` puts the first
in one line, `kinds_text` the rest.
`stage_time` costs a stage's first call and its whole request (every call,
decode steps with their longer KV caches) on the host/device timeline, under a
runtime (`emulator.cost.runtime`, default eager).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from emulator.attention import DEFAULT_ATTENTION
from emulator.cost.model import CostModel
from emulator.cost.profile import Profile, attention_defaults, kind_origin, load_profile, shipped_profile
from emulator.cost.roofline import Roofline
from emulator.cost.runtime import EAGER, Runtime
from emulator.cost.timeline import CallTime, GraphCoster, sum_calls
from emulator.devices import device
from emulator.pipeline import Stage


def is_profile_file(spec: str) -> bool:
    """Whether a device spec names a profile file rather than a catalog device."""
    return spec.endswith(".json") or Path(spec).is_file()


def cost_model(spec: str, attention: str = DEFAULT_ATTENTION, roofline: bool = False) -> CostModel:
    if is_profile_file(spec):
        if roofline:
            return Roofline(Profile.from_file(spec, attention).device, attention)
        return Profile.from_file(spec, attention)
    dev = device(spec)
    profile = None if roofline else shipped_profile(spec)
    return Profile.from_file(profile, attention) if profile else Roofline(dev, attention)


def cost_source(spec: str, roofline: bool = False) -> dict:
    """Where `cost_model(spec, roofline=roofline)` takes its kernel times from, as a plain dict:
    device, source ('measured' | 'derived' | 'roofline'), profile (the file, or None), and from a
    profile's provenance its method, date and device fingerprint."""
    path = Path(spec) if is_profile_file(spec) else shipped_profile(device(spec).name)
    data = load_profile(path) if path else None
    name = data["device"] if data else spec
    if roofline or data is None:
        why = "requested" if roofline else "no profile is shipped for this device"
        return {"device": name, "source": "roofline", "profile": None, "why": why}
    provenance = data["provenance"]
    return {"device": name, "source": provenance["source"], "profile": shown(path),
            "method": provenance.get("method"), "date": provenance.get("date"),
            "device_fingerprint": provenance.get("device_fingerprint"),
            "kinds": {kind: kind_origin(data, kind) for kind in data["kinds"]},
            "attention_default": attention_defaults(data)}


def kinds_text(source: dict) -> str:
    """One line per time source: the kinds a `cost_source` dict's profile takes from it, and the default
    attention implementation per shape class."""
    if source["source"] == "roofline":
        return "every kind from the datasheet roofline"
    by_origin: dict[str, list[str]] = {}
    for kind, origin in source["kinds"].items():
        by_origin.setdefault(origin, []).append(kind)
    lines = [f"{origin}: {', '.join(sorted(kinds))}" for origin, kinds in sorted(by_origin.items())]
    lines.append("default attention: " + ", ".join(f"{c} {i}" for c, i in source["attention_default"].items()))
    return "\n".join(lines)


def shown(path: Path) -> str:
    """A profile's path for reports: shipped ones as calibration/profiles/<file>, others as given."""
    shipped = Path(str(resources.files("calibration").joinpath("profiles")))
    return f"calibration/profiles/{path.name}" if path.parent.resolve() == shipped.resolve() else str(path)


def source_text(source: dict) -> str:
    """One line for a `cost_source` dict."""
    if source["source"] == "roofline":
        return f"datasheet roofline, uncalibrated ({source['why']})"
    fingerprint = ", ".join(f"{k} {v}" for k, v in (source["device_fingerprint"] or {}).items())
    when = source["date"] if source["source"] == "measured" else source["method"]
    facts = "; ".join(x for x in (when, fingerprint) if x)
    return f"{source['source']} profile {source['profile']}" + (f" ({facts})" if facts else "")


def stage_time(stage: Stage, model: CostModel, batch: int | None = None,
               runtime: Runtime = EAGER) -> tuple[CallTime, CallTime]:
    """(first call, whole request) of a stage under a cost model and a runtime (default eager)."""
    coster = GraphCoster(stage.graph(batch), model, model.device.synchronous, runtime)
    first = coster.call()
    if stage.kv_growth and stage.calls > 1:
        request = sum_calls([first] + [coster.call(c * stage.kv_growth) for c in range(1, stage.calls)])
    else:
        request = sum_calls([first] * stage.calls)
    return first, request
