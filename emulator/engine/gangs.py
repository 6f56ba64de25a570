"""Gang scheduling: a request's stages in a device group on a gang of its devices at once.

Under a gang policy (`emulator.engine.policies.gang`) each device group has one
`GangScheduler` instead of a policy per device. A request entering the group
waits in its queue (oldest first); it then takes a gang of P free devices, P
the largest degree among the plans of its stages here, and holds it for all
those stages: a planned stage runs one rank's graph (`emulator.parallel.stage.
rank_stage`) on each of its plan's first `degree` devices, an unplanned one
(text encoder, VAE) the stage itself on the gang's first device while the
others wait. One request per gang: nothing is batched. A request holds nothing
while it waits, so gangs cannot deadlock.

Placement: a gang of at most one node's GPUs goes into one node (the node
with the fewest free devices that still has P, lowest indices first); a
larger gang spreads over nodes in shares that are multiples of its plan's
node-local part (Ulysses x tensor), so its all-to-alls and all-reduces stay
inside nodes. Its other collectives (ring K/V send/recvs, the CFG all-gather,
the sequence all-gather when ring attention is in the plan, PipeFusion's and
the VAE's exchanges) are then costed on the network path of
`emulator.cost.collectives` (`emulator.engine.rank_stages.across_nodes`).

Order: first come, first served with a reservation for the oldest waiting
request (its shadow time: when enough devices will have freed for its gang,
each gang's end being known when it starts); with `backfill` a later request
starts now on free devices if its gang would end by that time (EASY
backfilling), so the oldest is never delayed by later ones and never starves.

Time of a stage's calls (`GangScheduler.calls_s`, the same sum for a running
gang and for the backfill's end estimate): each call by its kind under the
rank stage's schedule (step caching; `StageAtBatch.cost_of`), through the
timeline, minus the send/recvs hidden under the attention they overlap (ring,
PipeFusion; per kind of call, as `stage_summary` counts them); PipeFusion's
pipeline bubble (fills and warm-up, `emulator.parallel.stage.
pipeline_bubble_s`) is added to the stage's first call, so the gang's one
run of the stage's calls takes `stage_summary`'s per-rank time. Memory per
rank: the weights of the rank graphs (`emulator.parallel.memory.weight_bytes`:
tensor parallel and PipeFusion shard them, the other degrees replicate them),
the KV cache and cached residuals of the rank stage held while the request
holds the gang, and the running call's activations of the rank graph.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from dataclasses import dataclass

from emulator.engine.device import Batch
from emulator.engine.policies.base import BatchPolicy
from emulator.engine.policies.gang import GangPolicy, plan_for
from emulator.engine.rank_stages import RankStages
from emulator.engine.request import Request
from emulator.engine.topology import fits_topology, node_local
from emulator.parallel.memory import weight_bytes
from emulator.parallel.plan import ONE_GPU, ParallelPlan
from emulator.parallel.stage import warmup_calls
from emulator.pipeline import Stage
from emulator.schedules import FULL_CALL


@dataclass(frozen=True)
class GangSetup:
    """What a gang policy's run shares: the policy, each class's plans (by traffic class index), rank stages."""

    policy: GangPolicy
    plans: tuple[dict[str, ParallelPlan], ...]
    stages: RankStages


class Seat(BatchPolicy):
    """A gang group's device's `policy`: what the cluster, the device and metrics ask of one (the queue is
    the group's, shown on its first device); it serves nothing itself."""

    def __init__(self, scheduler: GangScheduler, first: bool):
        self.scheduler, self.first = scheduler, first

    def waiting_count(self) -> int:
        return len(self.scheduler.waiting) if self.first else 0

    def alone_bytes(self, device, r: Request, stage: Stage) -> int:
        return self.scheduler.alone_bytes(r, stage)

    def call_kinds(self, batch: Batch) -> dict | None:
        """Calls per kind of the rank stage's calls the batch runs (its last `batch.calls`)."""
        if batch.stage.schedule is None:
            return None
        return self.scheduler.kinds_of(batch.stage, batch.stage.calls - batch.calls)


class GangScheduler:
    def __init__(self, env, cluster, gi: int, devices: list, per_node: int, setup: GangSetup):
        self.env, self.cluster, self.gi, self.devices, self.setup = env, cluster, gi, devices, setup
        self.policy, self.per_node = setup.policy, per_node
        self.costs, self.model = devices[0].costs, devices[0].model
        self.nodes = [devices[i:i + per_node] for i in range(0, len(devices), per_node)]
        for n, node in enumerate(self.nodes):
            for d in node:
                d.node = n
                d.policy = Seat(self, d is devices[0])
        self.free = [list(node) for node in self.nodes]  # free devices per node, by index
        self.until: dict[int, float] = {}  # busy device index -> when its gang is expected to end
        self.waiting: list[tuple[float, int, Request]] = []  # (arrival, id, request), oldest first
        self.assigned = 0  # requests in this group (waiting or on a gang)
        self._wake = None
        self._options: dict[tuple[int, int], dict[int, ParallelPlan]] = {}
        self._durations: dict[tuple, float] = {}
        self._jobs: dict[tuple[int, int], tuple] = {}  # (class key, stage index) -> job_shape
        self._kinds: dict[tuple[int, int], dict] = {}  # (id(stage), first call) -> calls per kind from there
        env.process(self.serve())

    # -- plans ----------------------------------------------------------------------------------------

    def mode(self, r: Request) -> str | None:
        return r.cls.pipeline.params.get("guidance_mode")

    def options(self, cls, stage: Stage) -> dict[int, ParallelPlan]:
        key = (cls.key, id(stage))
        if key not in self._options:
            self._options[key] = options_for(self.policy, cls, stage, len(self.devices), self.per_node)
        return self._options[key]

    def candidates(self, cls, stage: Stage) -> list[ParallelPlan]:
        if self.policy.adapts(stage, cls):
            return list(self.options(cls, stage).values())
        return [self.setup.plans[cls.index].get(stage.name, ONE_GPU)]

    def need(self, cls, stage: Stage, plan: ParallelPlan) -> int:
        """Bytes a rank holds beside the weights while running `stage` under `plan`: KV cache and activations."""
        run = self.run_stage(cls, stage, plan, False)
        at = self.costs.at(run, run.batch)
        return at.resident_bytes + at.activation_bytes

    def fitting(self, cls, stage: Stage) -> dict[int, ParallelPlan]:
        """The options of an adapted stage whose rank fits beside the weights (all when none does)."""
        room = self.devices[0].capacity_bytes - self.devices[0].weights_bytes
        options = self.options(cls, stage)
        return {p: plan for p, plan in options.items() if self.need(cls, stage, plan) <= room} or options

    def run_stage(self, cls, stage: Stage, plan: ParallelPlan, spans: bool) -> Stage:
        """What one rank runs for a class's stage under `plan` (the stage itself on one GPU)."""
        params = cls.pipeline.params
        return stage if plan.degree == 1 else \
            self.setup.stages.get(stage, plan, params.get("guidance_mode"), spans, params.get("steps"))

    def kinds_of(self, run: Stage, first: int) -> dict:
        """Calls per kind of `run`'s calls from call `first` on."""
        key = (id(run), first)
        if key not in self._kinds:
            self._kinds[key] = dict(Counter(run.kind(c) for c in range(first, run.calls)))
        return self._kinds[key]

    def calls_s(self, cls, stage: Stage, plan: ParallelPlan, run: Stage, first: int) -> float:
        """Seconds a gang takes for `run`'s calls from call `first` on (a stage without KV growth): each call
        by its kind (`StageAtBatch.cost_of`), less the communication its kind hides under overlap; from the
        stage's first call, plus PipeFusion's pipeline bubble (fills and warm-up, as `stage_summary`)."""
        kinds = self.kinds_of(run, first)
        at = self.costs.at(run, run.batch)
        seconds = at.cost_of(kinds)[0]
        if plan.degree == 1:
            return seconds
        ranks = self.setup.stages
        seconds -= sum(ranks.hidden_s(run, k, self.model) * n for k, n in kinds.items())
        if plan.pipefusion > 1 and first == 0:
            step = at.kind_step(FULL_CALL).seconds - ranks.hidden_s(run, FULL_CALL, self.model)
            seconds += ranks.bubble_s(stage, run, plan, self.model, self.costs.runtime, step,
                                      warmup_calls(cls.pipeline, run))
        return seconds

    def alone_bytes(self, r: Request, stage: Stage) -> int:
        """The least a rank needs for `stage` under any plan the policy may run it with."""
        return min(self.need(r.cls, stage, p) for p in self.candidates(r.cls, stage))

    def job(self, r: Request, behind: int) -> tuple[dict[str, ParallelPlan], int, int]:
        """(plan per stage name of r's stages left here, gang size, node-local share)."""
        key = (r.cls.key, r.stage_index)
        shape = self._jobs.get(key)
        if shape is None:
            shape = self._jobs[key] = self.job_shape(r)
        fixed, adapted, size, inner = shape
        if not adapted:
            return fixed, size, inner
        plans = dict(fixed)
        for st, options, tokens in adapted:
            plan = plans[st.name] = self.policy.choose(options, tokens, behind, len(self.devices))
            size, inner = max(size, plan.degree), math.lcm(inner, node_local(plan))
        return plans, size, inner

    def job_shape(self, r: Request) -> tuple:
        """What r's stages here need, fixed per class and stage: (fixed plans by stage name, [(adapted stage,
        its fitting options, its tokens x batch x guidance passes)], gang size and node-local share of the
        fixed plans)."""
        fixed, adapted, size, inner = {}, [], 1, 1
        passes = 2 if self.mode(r) == "two-calls" else 1  # guidance run as two calls: twice the tokens
        for st in r.cls.pipeline.stages[r.stage_index:]:
            if self.cluster.group_of(st.name) != self.gi:
                break
            if self.policy.adapts(st, r.cls):
                fixed[st.name] = ONE_GPU  # placeholder, keeps the stages' order
                adapted.append((st, self.fitting(r.cls, st), self.costs.seq_len(st) * st.batch * passes))
                continue
            plan = fixed[st.name] = self.setup.plans[r.cls.index].get(st.name, ONE_GPU)
            size, inner = max(size, plan.degree), math.lcm(inner, node_local(plan))
        return fixed, adapted, size, inner

    # -- placement ------------------------------------------------------------------------------------

    def place(self, size: int, inner: int) -> list | None:
        """Free devices for a gang now (see the module docstring), or None."""
        if size <= self.per_node:
            best = None
            for n, free in enumerate(self.free):
                if len(free) >= size and (best is None or len(free) < len(self.free[best])):
                    best = n
            return None if best is None else self.free[best][:size]
        shares = [len(free) // inner * inner for free in self.free]
        if sum(shares) < size:
            return None
        gang, left = [], size
        for free, share in zip(self.free, shares):
            take = min(share, left)
            gang += free[:take]
            left -= take
        return gang

    def shadow_s(self, size: int, inner: int) -> float:
        """When enough devices will be free for a gang of `size`, if no other gang starts."""
        ends = [sorted(self.until[d.index] for d in node if d.index in self.until) for node in self.nodes]
        if size <= self.per_node:
            return min((e[size - len(f) - 1] for f, e in zip(self.free, ends) if len(f) + len(e) >= size),
                       default=math.inf)
        for t in sorted(x for e in ends for x in e):
            counts = [len(f) + bisect.bisect_right(e, t) for f, e in zip(self.free, ends)]
            if sum(c // inner * inner for c in counts) >= size:
                return t
        return math.inf

    def spans(self, ranks: list) -> bool:
        return ranks[0].node != ranks[-1].node

    def duration_s(self, r: Request, plans: dict[str, ParallelPlan], gang: list) -> float:
        """Seconds r's stages here will take on `gang` (as `run` will time them)."""
        key = (r.cls.key, r.stage_index, tuple(plans.items()), tuple(d.node for d in gang))
        if key not in self._durations:
            total = 0.0
            for i in range(r.stage_index, r.stage_index + len(plans)):
                st = r.cls.pipeline.stages[i]
                plan = plans[st.name]
                ranks = gang[:plan.degree]
                run = self.run_stage(r.cls, st, plan, self.spans(ranks))
                if run.kv_growth:
                    base = self.costs.at(run, run.batch).base
                    offset = r.cls.kv_offsets[i] if r.cls.kv_offsets else 0
                    total += sum(base.step(c).seconds for c in range(offset, offset + run.calls))
                    if plan.degree > 1:
                        total -= self.setup.stages.hidden_s(run, FULL_CALL, self.model) * run.calls
                else:
                    total += self.calls_s(r.cls, st, plan, run, 0)
            self._durations[key] = total
        return self._durations[key]

    # -- the group's process --------------------------------------------------------------------------

    def enqueue(self, r: Request) -> None:
        self.assigned += 1
        r.device = None
        bisect.insort(self.waiting, (r.arrival_s, r.id, r))
        self.poke()

    def poke(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    def serve(self):
        while True:
            self.start_what_fits()
            self._wake = self.env.event()
            yield self._wake

    def start_what_fits(self) -> None:
        while self.waiting:
            head = self.waiting[0][2]
            plans, size, inner = self.job(head, len(self.waiting) - 1)
            gang = self.place(size, inner)
            if gang is not None:
                self.waiting.pop(0)
                self.start(head, plans, gang)
                continue
            if self.policy.params.backfill:
                self.backfill(self.shadow_s(size, inner))
            return

    def backfill(self, shadow_s: float) -> None:
        """Start later requests whose gangs are free now and end by `shadow_s`."""
        now = self.env.now
        for entry in self.waiting[1:1 + self.policy.params.backfill_depth]:
            if not any(self.free):
                return
            r = entry[2]
            plans, size, inner = self.job(r, len(self.waiting) - 1 - self.waiting.index(entry))
            gang = self.place(size, inner)
            if gang is not None and now + self.duration_s(r, plans, gang) <= shadow_s:
                self.waiting.remove(entry)
                self.start(r, plans, gang)

    def start(self, r: Request, plans: dict[str, ParallelPlan], gang: list) -> None:
        end = self.env.now + self.duration_s(r, plans, gang)
        for d in gang:
            self.free[d.node].remove(d)
            self.until[d.index] = end
        self.env.process(self.run(r, plans, gang))

    def run(self, r: Request, plans: dict[str, ParallelPlan], gang: list):
        """r's stages here on its gang, call runs one after another; then the gang is free again."""
        env = self.env
        held = [0] * len(gang)  # KV bytes each rank holds while r has the gang
        for st in r.cls.pipeline.stages[r.stage_index:r.stage_index + len(plans)]:
            plan = plans[st.name]
            run = self.run_stage(r.cls, st, plan, self.spans(gang[:plan.degree]))
            resident = self.costs.at(run, run.batch).resident_bytes
            for j in range(plan.degree):
                held[j] = max(held[j], resident)
        for d, b in zip(gang, held):
            d.hold(b)
        r.device = gang[0]
        r.gang = max(r.gang, len(gang))
        while True:
            st, plan = r.stage, plans[r.stage.name]
            ranks = gang[:plan.degree]
            run = self.run_stage(r.cls, st, plan, self.spans(ranks))
            batch = Batch([r], run, run.batch, calls=run.calls - r.calls_done)
            started = [d.begin(batch) for d in ranks]
            if run.kv_growth:
                seconds = started[0][0]
                if plan.degree > 1:
                    seconds -= self.setup.stages.hidden_s(run, FULL_CALL, self.model) * batch.calls
            else:
                seconds = self.calls_s(r.cls, st, plan, run, run.calls - batch.calls)
            yield env.timeout(seconds)
            self.ended(ranks, batch, started, r)
            if not self.cluster.stage_ends(r, self.gi):
                break
        for d, b in zip(gang, held):
            d.hold(-b)
        for d in gang:
            del self.until[d.index]
            bisect.insort(self.free[d.node], d, key=lambda x: x.index)
        self.assigned -= 1
        self.cluster.left_group(r, self.gi)
        self.poke()

    def ended(self, ranks: list, batch: Batch, started: list, r: Request) -> None:
        """A call ran on every rank: busy time and work on each, one call in the counts and the trace."""
        now, metrics = self.env.now, self.cluster.metrics
        for d, (_, (cost, used, start, per_call)) in zip(ranks, started):
            d.running_bytes -= batch.at.activation_bytes
            metrics.work(d, start, now, cost[1], cost[2], now - start, used, batch.seq_len, 1)
        (_, (cost, _, start, per_call)) = started[0]
        metrics.gang_call(ranks, start, now, r.stage.name, [r], cost[3], batch.calls)
        if per_call is not None:
            metrics.tokens([r], start, per_call, now)
        if r.first_start_s is None:
            r.first_start_s = start
        r.calls_done = r.stage.calls


def options_for(policy: GangPolicy, cls, stage: Stage, devices: int, per_node: int) -> dict[int, ParallelPlan]:
    """Degree -> plan an adaptive policy may pick for a stage on a group (one GPU when no listed degree fits)."""
    out = {}
    for p in policy.params.degrees:
        params = cls.pipeline.params
        plan = plan_for(stage, p, params.get("guidance_mode"), policy.params.split, per_node, params.get("steps"))
        if plan is not None and fits_topology(plan, devices, per_node) is None:
            out[p] = plan
    return out or {1: ONE_GPU}


def gang_weights_bytes(cluster, gi: int, classes, setup: GangSetup, per_node: int, devices: int) -> int:
    """Per device of a gang group: each model's largest rank-graph weights among the plans it may run (read by
    `emulator.parallel.memory.weight_bytes`, as describe's per-rank memory: PipeFusion's patch repeats hold
    none of their own)."""
    seen: dict[tuple[str, str], int] = {}
    for c in classes:
        mode, steps = c.pipeline.params.get("guidance_mode"), c.pipeline.params.get("steps")
        for s in c.pipeline.stages:
            if cluster.group_of(s.name) != gi:
                continue
            if setup.policy.adapts(s, c):
                plans = list(options_for(setup.policy, c, s, devices, per_node).values())
            else:
                plans = [setup.plans[c.index].get(s.name, ONE_GPU)]
            most = max(weight_bytes((s if p.degree == 1 else setup.stages.get(s, p, mode, False, steps)).graph())
                       for p in plans)
            key = (c.pipeline.workload, s.weights)
            seen[key] = max(seen.get(key, 0), most)
    return sum(seen.values())
