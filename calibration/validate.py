"""`python -m calibration validate`: time real PyTorch models and compare with the emulator's prediction.

Each case builds a real model with random weights from its config
(calibration/models.py), times the forward call with the device's model timer
(calibration/setup.py: CUDA events on a GPU; on a CPU with a measured
profile, each call taken to the profile's speed by sentinel kernels of the
profile, the raw median kept beside it), measures the time per operator
category with the PyTorch profiler (`calibration.categories`), lowers the same
module with the frontend (`workloads.frontend`) and costs that graph with the
profile. Writes one CSV row per case and prints the table. With `--isolated`
it also times each distinct kernel of the lowered graph alone, right after the
model (`calibration.isolated`), so that an error splits into the kernels
composing differently in the model and the profile differing from today's
kernels.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

from calibration.models import MODELS, Case, build, default_cases  # noqa: F401 (MODELS: the CLI's choices)
from emulator.ops import CATEGORIES

TORCH_DTYPES = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}


def predict(module, inputs, kwargs, cost, reset):
    from emulator.cost.timeline import GraphCoster
    from workloads.frontend import lower_module

    graph = lower_module(module, *inputs, **kwargs)
    if reset:
        reset()
    return GraphCoster(graph, cost, cost.device.synchronous).call(), graph


def shares(seconds: dict[str, float]) -> dict[str, float]:
    total = sum(seconds.values()) or 1.0
    return {c: seconds.get(c, 0.0) / total for c in CATEGORIES}


FIELDS = ["case", "model", "batch", "size", "frames", "layers", "attention", "measured_s", "predicted_s", "error",
          "max_share_diff_points", "graph_ops", "fallback_ops", "normalized", "failure", "isolated_s",
          "untimed_ops", "measured_rounds_s", "page_faults_per_call", "allocator", "measured_raw_s"] + \
         [f"share_measured_{c}" for c in CATEGORIES] + [f"share_predicted_{c}" for c in CATEGORIES]


def validate(device: str, profile: str, out: Path, models: tuple[str, ...] = MODELS,
             isolated: bool = False, rounds: int = 1, allocator: str | None = None,
             attentions: tuple[str, ...] = ("flash", "baseline")) -> list[dict]:
    """Every case, `rounds` times round-robin; each row keeps the median over rounds of the timed seconds.

    The models run in the process state the profile's kernels were measured in (on a CPU, its
    `host.allocator`) unless `allocator` names another. Rounds spread a case's timing over minutes, as
    the profile's passes were spread over its run. The CSV is rewritten after every round.
    """
    from calibration.setups import setup_for
    from emulator.cost import Profile, cost_model

    setup = setup_for(device)
    cost = cost_model(profile)
    recorded = cost.data["host"].get("allocator") if isinstance(cost, Profile) else None
    state = setup.prepare(allocator or recorded)
    if state:
        print(f"process state: {state} (the profile's allocator: {recorded})", file=sys.stderr)
    cases = default_cases(device, models, attentions)
    rows: list[dict] = []
    for r in range(rounds):
        for i, case in enumerate(cases):
            if r > 0 and rows[i].get("failure"):
                continue
            row = validate_case(case, setup, profile, isolated, first=rows[i] if r else None)
            if r == 0:
                rows.append({**row, "allocator": state.get("allocator", "")})
            elif not row.get("failure"):
                row = merge_round(rows[i], row)
            print((f"round {r + 1}/{rounds} " if rounds > 1 else "") + line(row), file=sys.stderr, flush=True)
        write_rows(out, rows)
    print(table(rows))
    return rows


def merge_round(first: dict, row: dict) -> dict:
    """Fold a later round's timings into the case's row (medians over rounds); the round's row for printing."""
    for key in ("measured_s", "measured_raw_s"):
        if row.get(key):
            first.setdefault(f"{key}_rounds", [first[key]]).append(row[key])
            first[key] = statistics.median(first[f"{key}_rounds"])
    first["error"] = (first["predicted_s"] - first["measured_s"]) / first["measured_s"]
    return {**first, **row, "error": first["predicted_s"] / row["measured_s"] - 1}


def write_rows(out: Path, rows: list[dict]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            rounds = row.get("measured_s_rounds")
            writer.writerow({**row, "measured_rounds_s": " ".join(f"{t:.4f}" for t in rounds) if rounds else ""})


def validate_case(case: Case, setup, profile: str, isolated: bool, first: dict | None = None) -> dict:
    """One case's row: measured and predicted seconds, category shares (a failure is recorded, not raised).

    Given the case's row from a first round, it only builds the model and times it again (measured_s,
    measured_raw_s) with the first round's timer.
    """
    import torch

    from emulator.cost import cost_model

    row = {"case": case.label, "model": case.name, "batch": case.batch, "size": case.size,
           "frames": case.frames or "", "layers": case.layers or "", "attention": case.attention}
    fn = None
    try:
        with torch.no_grad():
            module, inputs, kwargs, fn, reset = build(case, setup.device, getattr(torch, TORCH_DTYPES[setup.validation_dtype]))
            if first is not None:
                return {**row, **first["timer"].time(fn)}
            cost = cost_model(profile, case.attention)
            row.update(measured_and_predicted(module, inputs, kwargs, fn, reset, cost, setup, isolated))
    except Exception as e:  # noqa: BLE001 (one failing case must not lose the others)
        row["failure"] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    finally:
        fn = None
        setup.release()
    return row


def measured_and_predicted(module, inputs, kwargs, fn, reset, cost, setup, isolated: bool) -> dict:
    """The first round of a case: prediction, timing, profiler categories, and the kernels alone if asked."""
    from calibration.categories import measured_categories

    predicted, graph = predict(module, inputs, kwargs, cost, reset)
    timer = setup.model_timer(cost, graph)
    row = {"timer": timer, **timer.time(fn)}
    categories = measured_categories(fn, setup.device)
    row.update(setup.call_counters(fn))
    if isolated:  # the same kernels alone, now: composition apart from the profile's error
        from calibration.isolated import isolated_seconds

        alone = isolated_seconds(graph, cost.attention, setup.validation_dtype, setup, cost.device.l2_MB * 1e6,
                                 timer.level)
        row["untimed_ops"] = int(alone.pop("untimed"))
        row["isolated_s"] = sum(alone.values())
    measured = row["measured_s"]
    m, p = shares(categories), shares(predicted.by_category_s)
    return {**row, "predicted_s": predicted.seconds, "error": (predicted.seconds - measured) / measured,
            "max_share_diff_points": 100 * max(abs(m[c] - p[c]) for c in CATEGORIES),
            "graph_ops": len(graph.ops), "fallback_ops": predicted.fallback_ops,
            **{f"share_measured_{c}": m[c] for c in CATEGORIES}, **{f"share_predicted_{c}": p[c] for c in CATEGORIES}}


def line(row: dict) -> str:
    if row.get("failure"):
        return f"{row['case']:28s} {row['attention']:8s} failed: {row['failure']}"
    text = (f"{row['case']:28s} {row['attention']:8s} {row['measured_s']:10.4f} {row['predicted_s']:10.4f} "
            f"{100 * row['error']:+7.1f}% {row['max_share_diff_points']:6.1f}")
    if row.get("isolated_s"):
        text += f" {row['isolated_s']:10.4f} {100 * (row['measured_s'] / row['isolated_s'] - 1):+7.1f}%"
    return text


def table(rows: list[dict]) -> str:
    head = f"{'case':28s} {'attention':8s} {'measured s':>10s} {'predicted':>10s} {'error':>8s} {'share pts':>6s}"
    if any(r.get("isolated_s") for r in rows):  # --isolated: the kernels alone, and the model against them
        head += f" {'alone s':>10s} {'model/alone':>8s}"
    return "\n".join([head, "-" * len(head)] + [line(r) for r in rows])
