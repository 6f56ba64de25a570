"""What one request of a workload costs, per component and in total: the `describe` report.

`report(pipeline)` returns a plain dict (the `--json` output); `format_text`
renders it for a terminal. Every number is derived from the stage graphs; with
a cost model the report also says where its kernel times come from, and is
costed under a runtime (`emulator.cost.runtime`; the key `runtime` appears
when it is not the default, eager, whose reports are unchanged). Costing
takes time in proportion to ops x calls, so `check_work` refuses up front a
request past a limit (the command line's `--max-work`).
"""

from __future__ import annotations

from collections import Counter

from emulator.attention import DEFAULT_ATTENTION, SHAPE_CLASSES, shape_class
from emulator.cost import CostModel, stage_time
from emulator.cost.model import TIME_SOURCES
from emulator.cost.runtime import EAGER, Runtime
from emulator.cost.costing import source_text
from emulator.errors import UserError
from emulator.ops import CATEGORIES
from emulator.pipeline import Pipeline, Stage
from emulator.schedule_cost import scheduled_stage_time


def costing_work(pipeline: Pipeline) -> tuple[int, Stage]:
    """Op calls a report costs (each stage's ops per call times its calls, from first-call graphs only), and the
    stage with the most."""
    work = {s.name: len(s.graph()) * s.calls for s in pipeline.stages}
    return sum(work.values()), max(pipeline.stages, key=lambda s: work[s.name])


def check_work(pipeline: Pipeline, limit: float) -> None:
    """Refuse, before any costing, a request whose report would cost more than `limit` op calls."""
    work, stage = costing_work(pipeline)
    if work > limit:
        raise UserError(f"describing this request would cost {work:.3g} op calls ({stage.name}: "
                        f"{len(stage.graph())} ops x {stage.calls} calls), over the limit of {limit:.3g}; "
                        f"raise it with --max-work N")


def attention_summary(stage: Stage) -> list[dict]:
    """Distinct attention calls of one stage call, in first-seen order, with how many of each."""
    first = stage.graph()
    grows = stage.kv_growth * (stage.calls - 1)
    counts: Counter = Counter()
    for op in first.attention_ops:
        a = op.shape
        counts[(a.variant, a.q_len, a.kv_len, a.heads, a.head_dim, a.batch, a.kv_cache)] += 1
    return [
        {
            "variant": variant,
            "q_len": q_len,
            "kv_len": kv_len,
            "kv_len_last": kv_len + grows if cached else kv_len,
            "heads": heads,
            "head_dim": head_dim,
            "batch": batch,
            "count": count,
        }
        for (variant, q_len, kv_len, heads, head_dim, batch, cached), count in counts.items()
    ]


def component(stage: Stage, model: CostModel | None = None, runtime: Runtime = EAGER) -> dict:
    g = stage.graph()
    per_request = stage.request_totals()
    timing = {}
    if model is not None:
        timed = stage_time if stage.schedule is None else scheduled_stage_time  # a schedule: costed per kind
        first, request = timed(stage, model, runtime=runtime)
        timing = {
            "time_per_call_s": first.seconds,
            "time_per_request_s": request.seconds,
            "device_busy_per_request_s": request.device_s,
            "host_idle_per_request_s": request.host_idle_s,
            "breakdown_s": request.by_category_s,
            "by_source_s": request.by_source_s,
            "fallback_ops_per_request": request.fallback_ops,
            "attention_implementations": {shape_class(op.shape): model.implementation(op.shape)
                                          for op in g.attention_ops},
        }
    return {
        "name": stage.name,
        "description": stage.description,
        "calls": stage.calls,
        "batch": stage.batch,
        "kv_growth_per_call": stage.kv_growth,
        "params": g.totals.params,
        "weight_bytes": g.totals.weight_bytes,
        "ops_per_call": len(g),
        "flops_per_call": g.totals.flops,
        "mac_flops_per_call": g.totals.mac_flops,
        "bytes_per_call": g.totals.bytes,
        "ops_by_category": {c: t.ops for c, t in g.by_category.items()},
        "flops_by_category": {c: t.flops for c, t in g.by_category.items()},
        "attention": attention_summary(stage),
        "similarity_bytes_per_call": g.totals.similarity_bytes,
        "similarity_bytes_formula_per_call": stage.similarity_formula(stage.batch) if stage.similarity_formula else None,
        "peak_activation_bytes": g.peak_activation_bytes("flash"),
        "peak_activation_bytes_baseline": g.peak_activation_bytes("baseline"),
        "kv_cache_bytes_last": stage.final_kv_cache_bytes(),
        "flops_per_request": per_request.flops,
        "bytes_per_request": per_request.bytes,
        "similarity_bytes_per_request": per_request.similarity_bytes,
        **schedule_keys(stage),
        **timing,
    }


def schedule_keys(stage: Stage) -> dict:
    """A scheduled stage's share of calls per kind and its cached bytes; the emulator models no output quality."""
    s = stage.schedule
    if s is None:
        return {}
    return {"schedule": s.text(), "schedule_source": s.note, "call_kinds_share": s.shares(),
            "cache_bytes": stage.cache_bytes()}


def cache_total(components: list[dict]) -> dict:
    """The largest step cache a request holds (stages run one after another), where a stage caches."""
    cached = [c["cache_bytes"] for c in components if "cache_bytes" in c]
    return {"cache_bytes": max(cached)} if cached else {}


def timing_summary(components: list[dict], model: CostModel, source: dict | None, runtime: Runtime) -> dict:
    """Request-level times: components run one after another; `source` says where the kernel times come from."""
    breakdown: dict[str, float] = {}
    by_source: dict[str, float] = {}
    implementations: dict[str, str] = {}
    for c in components:
        for k, v in c["breakdown_s"].items():
            breakdown[k] = breakdown.get(k, 0.0) + v
        for k, v in c["by_source_s"].items():
            by_source[k] = by_source.get(k, 0.0) + v
        implementations.update(c["attention_implementations"])
    return {
        "device": model.device.name,
        "cost_model": model.name,
        "cost_source": source,
        "attention": model.attention,
        "attention_implementations": {k: implementations[k] for k in SHAPE_CLASSES if k in implementations},
        **({} if runtime == EAGER else {"runtime": runtime.name}),
        "time_per_request_s": sum(c["time_per_request_s"] for c in components),
        "breakdown_s": {k: breakdown[k] for k in CATEGORIES if k in breakdown},
        "host_idle_s": sum(c["host_idle_per_request_s"] for c in components),
        "fallback_ops": sum(c["fallback_ops_per_request"] for c in components),
        "device_s_by_source": {k: by_source[k] for k in TIME_SOURCES if k in by_source},
    }


def report(pipeline: Pipeline, model: CostModel | None = None, source: dict | None = None,
           runtime: Runtime = EAGER, plan=None) -> dict:
    """The describe report; with a cost model, also the times per call, per request and per category under
    the runtime, and with its `cost_source` where those times come from; with a parallel `plan`
    (`emulator.parallel.Plan`, costed only with a model) also one rank's time per planned stage (`parallel`)."""
    components = [component(s, model, runtime) for s in pipeline.stages]
    parallel = {}
    if plan is not None and model is not None:
        from emulator.parallel.stage import summary

        parallel = {"parallel": summary(pipeline, plan, model, runtime)}
    analytic = [(s, c) for s, c in zip(pipeline.stages, components) if s.similarity_formula]
    return {
        "workload": pipeline.workload,
        "params": dict(pipeline.params),
        "components": components,
        "flops_per_request": sum(c["flops_per_request"] for c in components),
        "bytes_per_request": sum(c["bytes_per_request"] for c in components),
        "similarity_bytes_per_request": sum(c["similarity_bytes_per_request"] for c in components),
        # The analytic model covers the diffusion UNets; compare it with the graph over the same stages.
        "similarity_analytic": {
            "stages": [s.name for s, _ in analytic],
            "formula_bytes_per_request": sum(c["similarity_bytes_formula_per_call"] * s.calls for s, c in analytic),
            "graph_bytes_per_request": sum(c["similarity_bytes_per_request"] for _, c in analytic),
        } if analytic else None,
        "params_total": pipeline.params_total,
        "peak_activation_bytes": max(c["peak_activation_bytes"] for c in components),
        "peak_activation_bytes_baseline": max(c["peak_activation_bytes_baseline"] for c in components),
        "kv_cache_bytes": max(c["kv_cache_bytes_last"] for c in components),
        **cache_total(components),
        **(timing_summary(components, model, source, runtime) if model is not None else {}),
        **parallel,
    }


def _si(value: float, unit: str) -> str:
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _bytes(value: float) -> str:
    for scale, prefix in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if value >= scale:
            return f"{value / scale:.4g} {prefix}"
    return f"{value:.0f} B"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4g} ms" if seconds < 10 else f"{seconds:.4g} s"


def attention_text(r: dict) -> str:
    """'fa3 attention', or for the default what it resolved to per shape class: 'default attention (decode fa3)'."""
    if r["attention"] != DEFAULT_ATTENTION:
        return f"{r['attention']} attention"
    used = ", ".join(f"{cls} {impl}" for cls, impl in r["attention_implementations"].items())
    return f"default attention ({used})" if used else "default attention"


def format_text(r: dict) -> str:
    knobs = ", ".join(f"{k}={v}" for k, v in r["params"].items())
    lines = [f"{r['workload']} ({knobs})", ""]
    for c in r["components"]:
        lines.append(f"{c['name']}: {c['description']}")
        lines.append(f"  parameters {_si(c['params'], '')}, {c['calls']} call(s) per request at batch {c['batch']}"
                     + (f", KV cache +{c['kv_growth_per_call']} per call" if c["kv_growth_per_call"] else ""))
        lines.append(f"  per call: {_si(c['flops_per_call'], 'FLOP')}, {_bytes(c['bytes_per_call'])} moved, "
                     f"{c['ops_per_call']} ops, peak activations {_bytes(c['peak_activation_bytes'])} "
                     f"({_bytes(c['peak_activation_bytes_baseline'])} with baseline attention)")
        cats = ", ".join(f"{k} {v}" for k, v in c["ops_by_category"].items())
        lines.append(f"  ops by category: {cats}")
        if c["attention"]:
            lines.append("  attention calls:   variant    batch  heads  head_dim    q_len   kv_len  count")
            for a in c["attention"]:
                kv = f"{a['kv_len']}" if a["kv_len_last"] == a["kv_len"] else f"{a['kv_len']}..{a['kv_len_last']}"
                lines.append(f"                    {a['variant']:9s} {a['batch']:6d} {a['heads']:6d} {a['head_dim']:9d} "
                             f"{a['q_len']:8d} {kv:>8s} {a['count']:6d}")
        if "schedule" in c:
            lines.append(f"  schedule {c['schedule']}; cached residuals {_bytes(c['cache_bytes'])} per request"
                         + (f"\n  published: {c['schedule_source']}" if c["schedule_source"] else ""))
        if "time_per_call_s" in c:
            lines.append(f"  time: {_ms(c['time_per_call_s'])} per call, {_ms(c['time_per_request_s'])} per request"
                         f" (device busy {_ms(c['device_busy_per_request_s'])}, waiting for the host "
                         f"{_ms(c['host_idle_per_request_s'])})")
        sim = f"  similarity matrices per call: {_bytes(c['similarity_bytes_per_call'])} from the graph"
        if c["similarity_bytes_formula_per_call"] is not None:
            sim += f", {_bytes(c['similarity_bytes_formula_per_call'])} by the analytic formula"
        lines.append(sim)
        lines.append("")
    lines.append(f"per request: {_si(r['flops_per_request'], 'FLOP')}, {_bytes(r['bytes_per_request'])} moved, "
                 f"parameters {_si(r['params_total'], '')}")
    lines.append(f"  similarity matrices (baseline attention, all calls): {_bytes(r['similarity_bytes_per_request'])}")
    if r["similarity_analytic"]:
        a = r["similarity_analytic"]
        lines.append(f"    of which {', '.join(a['stages'])}: {_bytes(a['graph_bytes_per_request'])} from the graph, "
                     f"{_bytes(a['formula_bytes_per_request'])} by the analytic formula")
    if "time_per_request_s" in r:
        lines.append(f"  time on {r['device']} ({r['cost_model']}, {attention_text(r)}, "
                     f"{r.get('runtime', EAGER.name)} runtime): "
                     f"{_ms(r['time_per_request_s'])}, of which the device waits for the host {_ms(r['host_idle_s'])}")
        if r["cost_source"]:
            lines.append(f"  kernel times from: {source_text(r['cost_source'])}")
        total = r["time_per_request_s"]
        lines.append("  by category: " + ", ".join(f"{k} {_ms(v)} ({100 * v / total:.0f}%)"
                                                   for k, v in r["breakdown_s"].items()))
        busy = sum(r["device_s_by_source"].values())
        lines.append("  device time by source: " + ", ".join(f"{k} {100 * v / busy:.1f}%"
                                                            for k, v in r["device_s_by_source"].items()))
        if r["fallback_ops"]:
            lines.append(f"  {r['fallback_ops']} op calls fell outside the profile's measured domain and were "
                         f"costed by a roofline (the kind's fitted curve, or the datasheet's for unmeasured kinds)")
    lines.append(f"  peak activations: {_bytes(r['peak_activation_bytes'])} "
                 f"({_bytes(r['peak_activation_bytes_baseline'])} with baseline attention)"
                 + (f", KV cache {_bytes(r['kv_cache_bytes'])}" if r["kv_cache_bytes"] else "")
                 + (f", step cache {_bytes(r['cache_bytes'])}" if r.get("cache_bytes") else ""))
    if "parallel" in r:
        from emulator.parallel.stage import summary_text

        lines += summary_text(r["parallel"])
    return "\n".join(lines)
