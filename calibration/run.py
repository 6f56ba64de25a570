"""`python -m calibration run`: measure every kernel kind on this device and write a profile.

A short pipeline: plan (grid and workload shapes, within the device's limits;
calibration/plan.py) -> measure (the device's clock, in passes, resumable;
calibration/measure.py) -> reduce (passes restated to one speed;
calibration/reduce.py) -> fit and write (curve per kind, noisy entries pooled
with their neighbours, profile and its raw passes; calibration/write.py).
What differs between a GPU and a CPU comes from the device's Setup
(calibration/setup.py).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from calibration.fingerprint import catalog_name, fingerprint, provenance_fields
from calibration.grid import grid, spec_key, validation_specs, workload_specs
from calibration.measure import PartialLog, job_key, measure_kernel, measure_passes
from calibration.plan import estimated_seconds, plan
from calibration.reduce import reduce
from calibration.setups import setup_for
from calibration.write import kind_entry, profile_document, write
from emulator.devices import device as catalog_device


def run(device: str, dtype: str, quick: bool, workload_names: list[str], out: Path,
        device_name: str | None = None, max_kernel_s: float | None = None, passes: int = 1,
        max_passes: int | None = None, validation: bool = False, allocator: str | None = None) -> dict:
    import torch

    torch.manual_seed(0)
    setup = setup_for(device)
    state = setup.prepare(allocator)  # before anything is allocated
    fp = fingerprint(device)
    name = device_name or catalog_name(fp)
    catalog = catalog_device(name)
    limits = setup.limits.adjusted(quick, max_kernel_s)
    specs = grid(quick) + workload_specs(workload_names, dtype) + (validation_specs(device, dtype) if validation else [])
    todo, skipped = plan({spec_key(k, s): (k, s) for k, s in specs}.values(), dtype, limits, catalog)
    max_passes = max(passes, max_passes or passes)
    log = PartialLog(out, {"device": device, "dtype": dtype, "torch": fp["torch"], **state})
    done = log.resume()
    announce(device, fp, name, dtype, todo, passes, max_passes, done, skipped, limits, catalog)
    clock = setup.kernel_clock(catalog)

    def measure_one(p, kernel):
        entry = measure_kernel(p, kernel, dtype, setup, clock, limits, catalog.l2_MB * 1e6)
        log.append(entry)
        done[job_key(p, kernel.kind, kernel.shape)] = entry

    log.open(done, lambda: {**setup.host_times(), **state})
    try:
        measure_passes(todo, passes, max_passes, done, measure_one)
    finally:
        log.close()
    command = method(device, dtype, passes, max_passes, validation, state, quick, workload_names)
    profile, raw = build_profile(name, dtype, fp, done, skipped, setup, catalog, command)
    write(out, profile, raw)
    log.path.unlink()
    return profile


def announce(device, fp, name, dtype, todo, passes, max_passes, done, skipped, limits, catalog) -> None:
    remaining = [k for p in range(passes) for k in todo if job_key(p, k.kind, k.shape) not in done]
    estimate = estimated_seconds(remaining, dtype, limits, catalog.l2_MB * 1e6)
    extra = (f", then up to {max_passes - passes} extra pass(es) over kernels whose passes disagree"
             if max_passes > passes else "")
    print(f"calibration on {device} ({fp.get('gpu') or fp.get('cpu')}) as {name}, {dtype}: "
          f"{len(todo)} kernels x {passes} pass(es) ({passes * len(todo) - len(remaining)} measurements already "
          f"done, {len(skipped)} kernels skipped), estimated {estimate / 60:.1f} min{extra}", file=sys.stderr)


def method(device, dtype, passes, max_passes, validation, state, quick, workload_names) -> str:
    """The command line that reproduces this run."""
    parts = [f"python -m calibration run --device {device} --dtype {dtype} --passes {passes}"]
    parts += [f"--max-passes {max_passes}"] if max_passes > passes else []
    parts += ["--validation"] if validation else []
    parts += [f"--allocator {state['allocator']}"] if state.get("allocator") else []
    parts += ["--quick"] if quick else []
    parts += ["--workloads " + " ".join(workload_names)] if workload_names else []
    return " ".join(parts)


def build_profile(name: str, dtype: str, fp: dict, done: dict, skipped: list[dict], setup, catalog,
                  command: str) -> tuple[dict, dict]:
    """(the profile v2, its raw points per kind) from a run's logged measurements."""
    raw, failed = reduce(done, setup)
    kinds = {kind: kind_entry(kind, dtype, points, catalog, setup.features(kind)) for kind, points in raw.items()}
    provenance = {"source": "measured", "method": command, **provenance_fields(fp),
                  "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "timer": setup.timer, "noise": setup.noise}
    host = {**done["host"], "included_in_kernel_times": setup.host_times_included}
    return profile_document(name, dtype, provenance, host, kinds, skipped + failed), raw
