"""`python -m calibration run`: measure every kernel kind on this device, fit predictors, write a profile.

Steps: on a CPU, keep freed memory for reuse (calibration/allocator.py); collect
the grid and workload shapes; drop those that would not fit in
memory or would take longer than `max_kernel_s` per run (listed in the profile
as skipped); print how many kernels remain and an estimate of the time; measure
the host's dispatch time; time each kernel (progress bar), appending each result
to `OUT.partial.jsonl` so an interrupted run resumes where it stopped; on a
machine whose speed drifts, time again in extra passes the kernels whose pass
medians disagree; fit one predictor per kind; write the profile and remove the
partial file.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from calibration.allocator import REUSE
from calibration.allocator import apply as apply_allocator
from calibration.fingerprint import catalog_name, fingerprint
from calibration.grid import grid, spec_key, validation_specs, workload_specs
from calibration.drift import (DriftCorrectedCpuClock, DriftReference, at_speeds, compute_share, fluctuation,
                              readings, stream_share, typical_speeds)
from calibration.elasticity import exponents, fit_exponents
from calibration.host import dispatch_seconds, framework_seconds_per_op
from emulator.cost.kernels import attention_of_kind, work
from emulator.cost.predictor import fit_predictor
from emulator.cost.profile import SCHEMA, VERSION, check_profile, shape_from_json, shape_to_json
from emulator.cost.roofline import Roofline
from emulator.devices import device as catalog_device
from emulator.ops import Op

SETTINGS = {  # per device type: what fits, how long one kernel may take, how long to time it
    "cpu": {"max_set_bytes": 1 << 30, "max_kernel_s": 0.25, "budget_s": 1.5, "tolerance": 0.01},
    "cuda": {"max_set_bytes": 6 << 30, "max_kernel_s": 0.25, "budget_s": 0.4, "tolerance": 0.02},
}
# Pass medians agree when the two nearest their median differ by at most this share of it. On the
# 2-core development VM 490-552 of 978 kernels missed it after two passes, some by 3-6x (a neighbour's
# burst covering one pass of a kernel but not the other); after five, 4% of the target kinds' did.
SETTLE_TOLERANCE = 0.08


def settled(medians: list[float], tolerance: float = SETTLE_TOLERANCE) -> bool:
    """Whether a kernel's pass medians agree: the two nearest their median, so one outlier pass is outvoted."""
    if len(medians) < 2:
        return False
    middle = statistics.median(medians)
    a, b = sorted(medians, key=lambda m: abs(m - middle))[:2]
    return abs(a - b) <= tolerance * middle


# Kernels faster than this a run are measured in every pass up to --max-passes, settled or not: they
# cost little (457 of 977 kernels, 0.9 min a pass on the development VM) and their pass medians
# wander most (a group norm of 1M elements: 0.45, 0.55, 0.63, 0.65, 0.77 ms in five passes).
CHEAP_KERNEL_S = 2e-3


def unsettled(done: dict, todo) -> list:
    """The (kind, shape, estimate) of todo to measure again: pass medians that disagree, or a cheap kernel."""
    medians: dict[str, list[float]] = {}
    for key, e in done.items():
        if key != "host" and "error" not in e:
            medians.setdefault(key.split("|", 1)[1], []).append(e["median_s"])

    def again(k, s) -> bool:
        m = medians.get(spec_key(k, s), [])
        return not settled(m) or statistics.median(m) < CHEAP_KERNEL_S

    return [(k, s, est) for k, s, est in todo if again(k, s)]


def footprint_bytes(kind: str, shape, dtype: str) -> int:
    """Memory one input set, its weights and outputs take (baseline attention: two similarity matrices)."""
    op = Op("", shape, dtype)
    elements = shape.input_elements + shape.weight_elements + shape.output_elements
    return elements * op.dtype_bytes + (2 * op.similarity_bytes if kind == "attention_baseline" else 0)


def estimate_kernel_s(kind: str, shape, dtype: str, roofline: Roofline) -> float:
    """A pessimistic guess of one run: the roofline at half efficiency plus a launch."""
    op = Op("", shape, dtype)
    flops, nbytes = work(op, attention_of_kind(kind))
    return 2 * max(flops / roofline.device.peak_flops_per_s(op), nbytes / roofline.device.bytes_per_s) + 10e-6


def buffer_sets(set_bytes: int, cache_bytes: float) -> int:
    """Enough rotating input sets to overflow the last-level cache twice (1 to 8)."""
    return max(1, min(8, math.ceil(2 * cache_bytes / max(set_bytes, 1))))


def plan(specs, dtype: str, settings: dict, roofline: Roofline):
    todo, skipped = [], []
    for kind, shape in specs:
        need = footprint_bytes(kind, shape, dtype)
        est = estimate_kernel_s(kind, shape, dtype, roofline)
        if need > settings["max_set_bytes"]:
            skipped.append((kind, shape, f"needs {need / 2**30:.1f} GiB"))
        elif est > settings["max_kernel_s"]:
            skipped.append((kind, shape, f"estimated {est:.2f} s per run"))
        else:
            todo.append((kind, shape, est))
    return todo, skipped


def run(device: str, dtype: str, quick: bool, workload_names: list[str], out: Path,
        device_name: str | None = None, max_kernel_s: float | None = None, passes: int = 1,
        max_passes: int | None = None, validation: bool = False, allocator: str = REUSE) -> dict:
    import torch
    from tqdm import tqdm

    from calibration.kernels import make_runner
    from calibration.timers import CudaClock, measure

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but torch sees no CUDA device")
    torch.manual_seed(0)
    fp = fingerprint(device)
    # On a CPU freed memory is kept for reuse before anything is allocated (calibration/allocator.py);
    # a GPU's caching allocator does that already.
    allocator = apply_allocator(allocator) if device == "cpu" else None
    name = device_name or catalog_name(fp)
    catalog = catalog_device(name)
    settings = dict(SETTINGS[device])
    if max_kernel_s is not None:
        settings["max_kernel_s"] = max_kernel_s
    if quick:
        settings["budget_s"] = min(settings["budget_s"], 0.3)
    roofline = Roofline(catalog)
    specs = grid(quick) + workload_specs(workload_names, dtype)
    specs += validation_specs(device, dtype) if validation else []
    unique = {spec_key(k, s): (k, s) for k, s in specs}
    todo, skipped = plan(unique.values(), dtype, settings, roofline)
    # Each pass measures every kernel once, in its own shuffled order, so that slow spells of a
    # shared machine fall on different kernels in different passes; the profile keeps the median.
    jobs = []
    for p in range(passes):
        order = list(todo)
        random.Random(p).shuffle(order)
        jobs += [(p, kind, shape, est) for kind, shape, est in order]

    partial_path = out.with_name(out.name + ".partial.jsonl")
    done = _resume(partial_path, device, dtype, fp, allocator)
    remaining = [j for j in jobs if _job_key(j[0], j[1], j[2]) not in done]
    fill_Bps = 1e9 if device == "cpu" else 100e9  # filling input buffers with random values
    cache = catalog.l2_MB * 1e6
    estimate = 0.0
    for _, kind, shape, est in remaining:
        nbytes = footprint_bytes(kind, shape, dtype)
        estimate += min(20 * est, settings["budget_s"]) + 0.005 + nbytes * buffer_sets(nbytes, cache) / fill_Bps
    max_passes = max(passes, max_passes or passes)
    extra = (f", then up to {max_passes - passes} extra pass(es) over kernels whose passes disagree by "
             f"more than {SETTLE_TOLERANCE:.0%}") if max_passes > passes else ""
    print(f"calibration on {device} ({fp.get('gpu') or fp.get('cpu')}) as {name}, {dtype}: "
          f"{len(todo)} kernels x {passes} pass(es) ({len(jobs) - len(remaining)} measurements already done, "
          f"{len(skipped)} kernels skipped), estimated {estimate / 60:.1f} min{extra}", file=sys.stderr)

    with partial_path.open("a") as log:
        if "host" not in done:
            host = {"s_per_kernel": dispatch_seconds(device), **({"allocator": allocator} if allocator else {})}
            if device == "cuda":  # on a CPU the kernel times include the host's work
                try:
                    framework = framework_seconds_per_op(device)
                except Exception as e:  # a reference library too old or too new: keep the bare dispatch
                    print(f"host time per op from real models failed ({type(e).__name__}: {e})", file=sys.stderr)
                    framework = None
                if framework:
                    host.update(s_per_op=framework["s_per_op"], s_per_op_by_model=framework["by_model"])
                else:
                    print("diffusers/transformers not importable: host time per op = bare dispatch",
                          file=sys.stderr)
            log.write(json.dumps({"host": host, "device": device, "dtype": dtype, "torch": fp["torch"],
                                  "allocator": allocator}) + "\n")
            done["host"] = host
        reference = DriftReference() if device == "cpu" else None  # GPU clocks hold steady
        clock = CudaClock() if device == "cuda" else DriftCorrectedCpuClock(reference)
        def measure_kernel(p: int, kind: str, shape) -> None:
            entry = {"pass": p, "kind": kind, "shape": shape_to_json(shape)}
            started = time.perf_counter()
            runner = None
            try:
                sets = buffer_sets(footprint_bytes(kind, shape, dtype), cache)
                runner = make_runner(kind, shape, dtype, device, sets)
                if reference:
                    clock.compute_share = compute_share(kind, shape, dtype, catalog)
                    clock.stream_share = stream_share(kind, shape, dtype, catalog)
                    clock.ratios.clear()
                    clock.stream_ratios.clear()
                timing = measure(runner.run, clock, budget_s=settings["budget_s"],
                                 tolerance=settings["tolerance"])
                entry.update(timing.asdict(), backend=runner.backend, buffers=sets)
                if reference:
                    entry.update(compute_drift=statistics.median(clock.ratios),
                                 compute_share=clock.compute_share,
                                 compute_reference_s=clock.baseline_s,
                                 stream_reference_s=clock.stream_baseline_s)
                    if clock.stream_ratios:
                        entry.update(stream_drift=statistics.median(clock.stream_ratios),
                                     stream_share=clock.stream_share)
            except (RuntimeError, ValueError, TypeError) as e:  # out of memory, or a shape torch refuses
                entry["error"] = str(e).splitlines()[0][:200]
            finally:
                runner = None
                if device == "cuda":
                    torch.cuda.empty_cache()
            entry["wall_s"] = round(time.perf_counter() - started, 4)
            log.write(json.dumps(entry) + "\n")
            log.flush()
            done[_job_key(p, kind, shape)] = entry

        for p, kind, shape, _ in tqdm(remaining, desc="kernels", unit="kernel", file=sys.stderr):
            measure_kernel(p, kind, shape)
        for p in range(passes, max_passes):
            again = unsettled(done, todo)
            if not again:
                break
            random.Random(p).shuffle(again)
            for kind, shape, _ in tqdm(again, desc=f"pass {p + 1}, kernels whose passes disagree or cheap ones",
                                       unit="kernel", file=sys.stderr):
                if _job_key(p, kind, shape) not in done:
                    measure_kernel(p, kind, shape)

    profile = build_profile(name, dtype, fp, done, skipped, quick, workload_names, device, passes, catalog,
                            max_passes, validation)
    out.write_text(json.dumps(profile, indent=1))
    partial_path.unlink()
    return profile


def _job_key(p: int, kind: str, shape) -> str:
    return f"{p}|{spec_key(kind, shape)}"


def _resume(path: Path, device: str, dtype: str, fp: dict, allocator: str | None = None) -> dict:
    """Measurements of an interrupted run of the same device, dtype, torch and allocator state, by pass and spec."""
    done: dict = {}
    if not path.exists():
        return done
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines or lines[0].get("device") != device or lines[0].get("dtype") != dtype \
            or lines[0].get("torch") != fp["torch"] or lines[0].get("allocator") != allocator:
        path.unlink()  # another device or setup: start afresh
        return done
    done["host"] = lines[0]["host"]
    for entry in lines[1:]:
        shape = shape_from_json(entry["kind"], entry["shape"])
        done[_job_key(entry.get("pass", 0), entry["kind"], shape)] = entry
    return done


def build_profile(name: str, dtype: str, fp: dict, done: dict, skipped: list, quick: bool,
                  workload_names: list[str], device: str, passes: int = 1, catalog=None,
                  max_passes: int | None = None, validation: bool = False) -> dict:
    measurements: dict[str, list] = {}
    for key, entry in done.items():
        if key != "host":
            measurements.setdefault(spec_key(entry["kind"], shape_from_json(entry["kind"], entry["shape"])),
                                    []).append(entry)
    # The drift is taken out batch by batch (calibration/drift.py), to the speeds the references had at
    # the clock's start; the profile states its times at the references' median speeds over the run
    # instead, and keeps them so that later timings (calibration validate) are taken to the same speeds.
    speeds = typical_speeds([e for key, e in done.items() if key != "host" and "error" not in e])
    # How far each kind's times follow the references' fluctuations, fitted from the passes
    # (calibration/elasticity.py): each pass's deviation from its kernel's mean reading is restated with
    # those exponents in place of the rule's (calibration/drift.py, `fluctuation`).
    kernels_by_kind: dict[str, list] = {}
    for entries in measurements.values():
        good = [e for e in entries if "error" not in e]
        if good:
            kernels_by_kind.setdefault(good[0]["kind"], []).append(good)
    fitted = fit_exponents(kernels_by_kind) if speeds else {}

    def restated(good: list[dict]) -> list[float]:
        """Factors for the entries of one kernel: to the profile's speeds, fluctuations by the fitted exponents."""
        if not all("compute_drift" in e for e in good):
            return [at_speeds(e, speeds) for e in good]
        logs = [[math.log(r) for r in readings(e)] for e in good]
        level = tuple(math.exp(sum(col) / len(good)) for col in zip(*logs))
        return [at_speeds(e, speeds) * fluctuation(e, level, exponents(e["kind"], e["compute_share"],
                                                                       e.get("stream_share", 0.0), fitted))
                for e in good]

    by_kind: dict[str, list] = {}
    failed = []
    for entries in measurements.values():
        good = [e for e in entries if "error" not in e]
        if not good:
            e = entries[0]
            failed.append({"kind": e["kind"], "shape": e["shape"], "reason": e["error"]})
            continue
        factors = restated(good)
        medians = [e["median_s"] * f for e, f in zip(good, factors)]
        point = {
            "shape": good[0]["shape"],
            "median_s": statistics.median(medians),  # over passes (drift-corrected on a CPU)
            "min_s": min(e["min_s"] * f for e, f in zip(good, factors)),
            "spread": max(e["spread"] for e in good),  # within a pass, the worst
            "pass_medians_s": medians,
            "repeats": sum(e["repeats"] for e in good),
            "rejected": sum(e["rejected"] for e in good),
            "backend": good[0]["backend"],
            "buffers": good[0]["buffers"],
            "wall_s": round(sum(e["wall_s"] for e in good), 3),
        }
        # The references' readings against the clock's start, per pass: with the pass medians, how much
        # this kernel's times follow each reference can be fitted afterwards.
        if "compute_drift" in good[0]:
            point["compute_drifts"] = [round(e["compute_drift"], 4) for e in good]
        if "stream_drift" in good[0]:
            point["stream_drifts"] = [round(e["stream_drift"], 4) for e in good]
        by_kind.setdefault(good[0]["kind"], []).append(point)
    kinds = {}
    for kind, points in sorted(by_kind.items()):
        shapes = [shape_from_json(kind, p["shape"]) for p in points]
        predictor = fit_predictor(kind, dtype, shapes, [p["median_s"] for p in points], catalog)
        backends = Counter(p["backend"] for p in points)
        kinds[kind] = {"backend": backends.most_common(1)[0][0], "curve": predictor.curve.asdict(),
                       "points": points}
    profile = {
        "schema": SCHEMA,
        "version": VERSION,
        "device": name,
        "dtype": dtype,
        "fingerprint": fp,
        "provenance": {
            "kind": "measured",
            "method": f"python -m calibration run --device {device} --dtype {dtype} --passes {passes}"
                      + (f" --max-passes {max_passes}" if max_passes and max_passes > passes else "")
                      + (" --validation" if validation else "")
                      + (f" --allocator {done['host']['allocator']}" if done["host"].get("allocator") else "")
                      + (" --quick" if quick else "") + (" --workloads " + " ".join(workload_names)
                                                         if workload_names else ""),
            "timer": "CUDA events" if device == "cuda" else "perf_counter",
            "drift_correction": ("each batch of samples rescaled by a 384^3 matmul run around it, to the "
                                 "power of the kernel's compute share, and a linear's also by a one-row "
                                 "linear streaming 67 MB of weights, to the power of its memory share; "
                                 "each pass's deviation from its kernel's mean readings restated with "
                                 "exponents fitted per kind from the passes (drift_exponents; the rule for "
                                 "kinds without enough passes); stated at the references' median speeds "
                                 "over the run (drift_reference); see "
                                 "calibration/drift.py and calibration/elasticity.py") if speeds else "none",
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        },
        # the speed the kernel times are normalized to, so that later timings on this machine
        # (calibration validate) can be normalized the same way
        **({"drift_reference": speeds} if speeds else {}),
        # per kind, (a, b) of each reference's exponent a * w + b * (1 - w) for a kernel of compute share w
        **({"drift_exponents": fitted} if fitted else {}),
        "host": {**done["host"], "included_in_kernel_times": device == "cpu"},
        "kinds": kinds,
        "skipped": [{"kind": k, "shape": shape_to_json(s), "reason": r} for k, s, r in skipped] + failed,
    }
    check_profile(profile, "new profile")
    return profile
