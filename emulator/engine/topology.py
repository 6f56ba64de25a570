"""Cluster topology and per-stage parallel plans of a scenario: nodes, gang sizes, and their checks.

A device group is cut into nodes of `gpus_per_node` devices (the group's, else
the cluster's, else the device catalog's: one NVLink domain), in index order;
the last node may be partial. `cluster.nodes` (without groups) makes one group
of nodes x gpus_per_node devices.

A traffic class may run stages on several GPUs at once (a gang): `parallel:
{transformer: "ulysses=4,cfg=2"}` in the class, or in a device group for every
class it serves (the class's entry wins). The plan's text and its validation
are `emulator.parallel.plan`'s; here each plan is also held to the topology:
at most the group's devices; its node-local part (Ulysses x tensor: the
all-to-alls and all-reduces after every block) inside one node; and a gang
larger than a node must split into per-node shares that are multiples of that
part (ring, CFG, PipeFusion and the VAE's spatial split cross nodes, see
`emulator.engine.gangs`). Scheduling policies other than the gang policies
run every stage on one device and refuse a plan of more than one GPU.
"""

from __future__ import annotations

from dataclasses import replace

from emulator.errors import UserError, excerpt
from emulator.parallel.plan import ONE_GPU, ParallelPlan, parse_stage_plan

def node_size(s, group, node_gpus) -> int:
    """GPUs per node of a device group; `node_gpus(device spec)`: the device's own (the catalog's)."""
    return group.gpus_per_node or s.cluster.gpus_per_node or node_gpus(group.device or s.device)


def with_topology(s, node_gpus):
    """The scenario with `cluster.nodes` turned into its devices (nodes x gpus_per_node)."""
    from emulator.engine.schema import fail

    c = s.cluster
    if c.nodes is None:
        return s
    if c.groups:
        fail("cluster.nodes", "is for a cluster without groups; give each group its devices instead")
    per_node = c.gpus_per_node or node_gpus(s.device)
    return replace(s, cluster=replace(c, devices=c.nodes * per_node))


def group_index(s, stage_name: str) -> int | None:
    """Index in `s.groups` of the group serving a stage (the one that leaves out stages otherwise)."""
    rest = None
    for gi, g in enumerate(s.groups):
        if g.stages is None:
            rest = gi
        elif stage_name in g.stages:
            return gi
    return rest


def parsed(text: str, where: str) -> ParallelPlan:
    try:
        return parse_stage_plan(text if isinstance(text, str) else "")
    except UserError as e:
        raise UserError(f"{where}: {str(e).removeprefix('--parallel: ')}") from None


def stage_plans(s, t, pipeline=None) -> dict[str, ParallelPlan]:
    """Stage name -> plan of traffic class t (its `pipeline` if built): its own entries over its stages'
    groups' entries."""
    out: dict[str, ParallelPlan] = {}
    for st in (pipeline or t.pipeline()).stages:
        gi = group_index(s, st.name)
        text = t.parallel.get(st.name, s.groups[gi].parallel.get(st.name) if gi is not None else None)
        if text is not None:
            out[st.name] = parse_stage_plan(text)
    return out


def check_gangs(s, node_gpus) -> None:
    """Plans name stages, parse, suit their graphs and the topology, and meet a gang policy."""
    from emulator.engine.policies.gang import GangPolicy
    from emulator.engine.schema import fail
    from emulator.parallel.stage import rank_stage

    for gi, g in enumerate(s.cluster.groups or ()):
        for name, text in g.parallel.items():
            parsed(text, f"cluster.groups[{gi}].parallel.{name}")
    gangs = False
    for i, t in enumerate(s.traffic):
        pipeline = t.pipeline()
        names = tuple(st.name for st in pipeline.stages)
        for name, text in t.parallel.items():
            if name not in names:
                fail(f"traffic[{i}].parallel.{name}", f"no such stage of {excerpt(t.workload)}; stages: "
                                                      f"{', '.join(names)}")
            parsed(text, f"traffic[{i}].parallel.{name}")
        for gi, g in enumerate(s.cluster.groups or ()):
            for name, text in g.parallel.items():
                if name in names and group_index(s, name) != gi:
                    fail(f"cluster.groups[{gi}].parallel.{name}", f"stage {name} of {t.name} runs on another group")
        mode = pipeline.params.get("guidance_mode")
        plans = stage_plans(s, t, pipeline)
        for st in pipeline.stages:
            plan = plans.get(st.name, ONE_GPU)
            if plan.degree == 1:
                continue
            gangs = True
            where = f"traffic[{i}].parallel.{st.name}" if st.name in t.parallel else \
                f"cluster.groups[{group_index(s, st.name)}].parallel.{st.name}"
            try:
                rank_stage(st, plan, mode, pipeline.params.get("steps"))
            except UserError as e:
                fail(where, str(e))
            if st.kv_growth and t.lengths is not None:
                fail(where, "a planned KV-growing (decode) stage needs fixed prompt and output lengths (knobs)")
            group = s.groups[group_index(s, st.name)]
            problem = fits_topology(plan, group.devices, node_size(s, group, node_gpus))
            if problem:
                fail(where, problem)
    if gangs:
        for k, p in enumerate(s.policies):
            from emulator.engine.policies import POLICIES

            if not issubclass(POLICIES[p.policy], GangPolicy):
                gang_names = [n for n, c in POLICIES.items() if issubclass(c, GangPolicy)]
                fail(f"policies[{k}].policy", f"{p.policy} runs every stage on one device and the traffic plans "
                                              f"gangs of several; choose one of: {', '.join(gang_names)}")


def node_local(plan: ParallelPlan) -> int:
    """GPUs of the plan's groups that must share a node: Ulysses x tensor (exchanged after every block)."""
    return plan.ulysses * plan.tensor


def fits_topology(plan: ParallelPlan, devices: int, per_node: int) -> str | None:
    """Why a plan cannot be placed on a group of `devices` in nodes of `per_node` (None: it can)."""
    p, inner = plan.degree, node_local(plan)
    if p > devices:
        return f"{plan.text()} needs {p} GPUs; the group has {devices}"
    if inner > per_node:
        return (f"{plan.text()}: ulysses x tensor = {inner} GPUs exchange data after every block and must share a "
                f"node of {per_node} GPUs")
    if p > per_node:
        shares = [min(per_node, devices - start) // inner * inner for start in range(0, devices, per_node)]
        if sum(shares) < p:
            return (f"{plan.text()} spans nodes of {per_node} GPUs in shares of ulysses x tensor = {inner}; "
                    f"the group's {devices} GPUs hold only {sum(shares)} that way")
    return None
