"""`python -m calibration transfer --device NAME`: a profile for a GPU nobody measured, from the measured H100.

A device with datasheet facts only was costed by its roofline at peak rates,
which no kernel attains: an L4 came out nearly as fast as an H200 on a
device-bound request. Instead every kernel the H100 measured keeps its
attained efficiency on the target. Its time is scaled by

    w * P_h100 / P_target + (1 - w) * B_h100 / B_target

where P is the datasheet peak its arithmetic runs at (matrix units for
products, vector units otherwise), B the memory bandwidth, and w the kernel's
compute share of its roofline time on the H100 (emulator/cost/roofline.py).
A compute-bound GEMM scales by the compute ratio, a norm by the bandwidth
ratio. The profile is `derived`, every kind marked `transferred`; the target's
own cache size, clocks and kernel choices are not modelled.
"""

from __future__ import annotations

from pathlib import Path

from calibration.write import profile_document, write
from emulator.cost.predictor import DEFAULT_FEATURES, fit_predictor
from emulator.cost.profile import kernel_seconds, load_profile, shape_from_json
from emulator.cost.roofline import compute_share
from emulator.devices import device as catalog_device
from emulator.ops import Op

PROFILES = Path(__file__).with_name("profiles")
SOURCE_PROFILE = PROFILES / "h100-sxm.json"
SOURCE_DEVICE = "h100-sxm"


def efficiency_ratio(kind: str, shape, dtype: str, target, source) -> float:
    """Target time over source time for one kernel, its attained efficiency kept (the rule above)."""
    w = compute_share(kind, shape, dtype, source)
    op = Op("", shape, dtype)
    return (w * source.peak_flops_per_s(op) / target.peak_flops_per_s(op)
            + (1 - w) * source.bytes_per_s / target.bytes_per_s)


def transferred_entry(kind: str, entry: dict, dtype: str, target, source) -> dict:
    shapes = [shape_from_json(kind, p["shape"]) for p in entry["points"]]
    seconds = [t * efficiency_ratio(kind, s, dtype, target, source)
               for t, s in zip(kernel_seconds(entry)[0], shapes)]  # launch excluded before scaling
    predictor = fit_predictor(kind, dtype, shapes, seconds, target)
    return {"features": DEFAULT_FEATURES[kind], "source": f"transferred: measured {source.name} x efficiency kept",
            "backend": f"{entry['backend']} (on the {source.name})", "curve": predictor.curve.asdict(),
            "points": [{"shape": p["shape"], "seconds": t} for p, t in zip(entry["points"], seconds)]}


def transfer(target_name: str) -> dict:
    """The derived profile of a catalog GPU from the measured H100 profile."""
    target, source = catalog_device(target_name), catalog_device(SOURCE_DEVICE)
    measured = load_profile(SOURCE_PROFILE)
    dtype = measured["dtype"]
    kinds = {kind: transferred_entry(kind, entry, dtype, target, source)  # what the H100 measured itself:
             for kind, entry in sorted(measured["kinds"].items()) if "source" not in entry}  # no imported library
    provenance = {"source": "derived", "method": f"python -m calibration transfer --device {target_name}",
                  "description": "calibration/transfer.py: the measured H100's kernels at their attained "
                                 "efficiency, scaled to this device's datasheet peaks and bandwidth",
                  "device_fingerprint": {"gpu": target.label},
                  "citations": [f"calibration/profiles/{SOURCE_PROFILE.name}", f"datasheet: {target.source}"]}
    host = {"s_per_kernel": target.host_us_per_kernel * 1e-6, "s_per_op": target.host_us_per_op * 1e-6,
            "included_in_kernel_times": False, "source": target.host_source}
    return profile_document(target_name, dtype, provenance, host, kinds, [])


def transfer_and_write(target_name: str, out: Path | None = None) -> Path:
    path = out or PROFILES / f"{target_name}.json"
    write(path, transfer(target_name))
    return path
