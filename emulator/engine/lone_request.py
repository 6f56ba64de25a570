"""A lower bound on any request's latency in a scenario: its lone request, no queueing, on the fastest device.

Every stage call is costed as the first call of its kind (a full call, or a
step-cached partial call of the stage's schedule, times how many calls of that
kind a request makes) on the fastest of the scenario's device groups, at each
class's shortest prompt and output lengths; a stage the class plans over a
gang of G GPUs (`parallel`) is credited a perfect G-fold speed-up with free
communication. Later decode calls only grow, a real gang never beats perfect
scaling, and queueing only adds, so no request of the scenario can finish
sooner: a configuration whose bound exceeds a latency target misses it at any
device count. The bound of the scenario is its fastest class's.
"""

from __future__ import annotations


def call_s(graph, model, run_as) -> float:
    """Seconds of one call of `graph` alone on `model`'s device (host dispatch included, as the engine costs it)."""
    from emulator.cost.timeline import GraphCoster

    return GraphCoster(graph, model, model.device.synchronous, run_as).call().seconds


def stage_bound_s(stage, models: list, run_as, degree: int = 1) -> float:
    """A request's calls of one stage: per call kind, its count x the fastest device's first call, / gang size."""
    return sum(n * min(call_s(stage.call_graph(kind), m, run_as) for m in models)
               for kind, n in stage.kind_counts().items()) / degree


def lone_request_bound_s(s) -> float:
    """The scenario's lower bound on a request's latency (see the module's docstring)."""
    from emulator.cost import runtime
    from emulator.engine.scenario import check_devices, length_ranges
    from emulator.parallel.plan import parse_stage_plan

    models = check_devices(s)
    run_as = runtime(s.runtime)
    bounds = []
    for t in s.traffic:
        shortest = {key: low for key, (low, _, _) in length_ranges(s, t).items()}
        degrees = {name: parse_stage_plan(text).degree for name, text in t.parallel.items()}
        bounds.append(sum(stage_bound_s(st, models, run_as, degrees.get(st.name, 1))
                          for st in t.pipeline(shortest).stages))
    return min(bounds)
