"""A device's own profile reconciled with its public tables: their attention libraries, and one kernel-time convention.

The H100's default profile is our own calibration (PyTorch's kernels as
diffusers runs them) and the A100's is derived from published curves; the
public tables for the same GPUs time the attention libraries serving engines
run (vLLM's FlashAttention-2/3/4 builds, FlashInfer), up to 64k-token
bidirectional and 16k-token causal attention. `add_public_attention` copies
those attention kinds from the imported profile into the device's profile
where it lacks them, marked `imported: ...` with their table files cited, so
`--attention fa3` works on the device's own profile while its default stays
the implementation it was calibrated for.
"""

from __future__ import annotations

import copy

from calibration.kernel_excess import kernel_excess
from emulator.cost.profile import check_profile

EVENT_TIMED = "CUDA events"  # a profile's provenance timer when each kernel was timed one launch at a time

IMPORTED = "imported"  # the kind `source` prefix of kinds copied from a public-table profile


def add_public_attention(profile: dict, imported: dict, imported_file: str) -> dict:
    """`profile` with the table-measured attention kinds of `imported` that it lacks (a checked copy)."""
    out = copy.deepcopy(profile)
    added = []
    for kind, entry in imported["kinds"].items():
        own = kind in profile["kinds"] and not profile["kinds"][kind].get("source", "").startswith(IMPORTED)
        if not kind.startswith("attention_") or "source" in entry or own:
            continue  # not attention, not measured by the tables, or one the profile measured itself
        out["kinds"][kind] = {**entry, "source": f"{IMPORTED}: measured on this GPU, {imported_file}"}
        added.append(kind)
    citations = [c for c in out["provenance"].get("citations", []) if not c.startswith(IMPORTED)]
    if added:
        tables = [c for c in imported["provenance"]["citations"] if c.startswith("aiconfigurator-core")]
        citations.append(f"{IMPORTED} {', '.join(added)} from {imported_file}: " + "; ".join(tables))
    out["provenance"] = {**out["provenance"], "citations": citations}
    check_profile(out, "merged profile")
    return out


def declare_launch_excess(profile: dict, imported: dict) -> dict:
    """`profile` (a checked copy) with the launch cost its own kinds carry against `imported`'s graph-replayed
    GEMMs declared on each of them, when it was timed one launch at a time; unchanged otherwise."""
    if profile["provenance"].get("timer") != EVENT_TIMED:
        return profile
    estimate = kernel_excess(profile, imported)
    out = copy.deepcopy(profile)
    for entry in out["kinds"].values():
        if "source" not in entry:  # measured by this calibration, not imported
            entry["launch_in_times_s"] = estimate["median_s"]
    out["provenance"] = {**out["provenance"], "launch_excess": {
        k: estimate[k] for k in ("median_s", "q25_s", "q75_s", "n", "shape", "bias_cost_s", "launch_bound")}}
    check_profile(out, "profile with launch excess")
    return out
