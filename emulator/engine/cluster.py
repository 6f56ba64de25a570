"""The simulated cluster: device groups, where each stage runs, routing, admission and completion.

Each group is N identical devices serving the stages placed on it; a stage
with no group of its own runs on the group that leaves `stages` out. A request
is routed to a device of the group of its current stage and stays on that
device for its following stages of the same group (its KV cache lives there);
when its next stage belongs to another group it is routed again. A request
that can never fit on a device of some stage's group is rejected on arrival,
with the reason. Under a gang policy each group has a `GangScheduler`
(`emulator.engine.gangs`) in place of routing and per-device policies.
"""

from __future__ import annotations

import itertools

import simpy

from emulator.cost.model import CostModel
from emulator.engine.device import Device
from emulator.engine.gangs import GangScheduler, GangSetup, gang_weights_bytes
from emulator.engine.request import Request, RequestClass
from emulator.engine.stepcost import StepCosts
from emulator.errors import UserError

GB = 1e9


class Cluster:
    def __init__(self, env: simpy.Environment, groups: list[tuple[str, int, tuple[str, ...] | None, CostModel]],
                 classes: list[RequestClass], costs: dict[str, StepCosts], router: str, make_policy, metrics,
                 gangs: GangSetup | None = None, node_sizes: tuple[int, ...] = ()):
        """groups: (name, devices, stage names or None, cost model); costs: StepCosts per group name; gangs: a
        gang policy's setup (then node_sizes: GPUs per node of each group)."""
        self.env, self.metrics, self.router = env, metrics, router
        self.classes = classes
        self.placement: dict[str, int] = {}  # stage name -> group index
        default = None
        for gi, (_, _, stages, _) in enumerate(groups):
            if stages is None:
                default = gi
            for name in stages or ():
                self.placement[name] = gi
        self.default_group = default
        self.groups: list[list[Device]] = []
        self.gangs: list[GangScheduler | None] = []  # per group, under a gang policy
        index = itertools.count()
        for gi, (name, n, _, model) in enumerate(groups):
            if gangs is None:
                weights = self.weights_bytes(gi, classes)
            else:
                weights = gang_weights_bytes(self, gi, classes, gangs, node_sizes[gi], n)
            if weights > model.device.memory_bytes:
                raise UserError(f"cluster group {name}: the weights of the models it serves ({weights / GB:.1f} GB) "
                                f"exceed the {model.device.name}'s {model.device.memory_bytes / GB:.0f} GB")
            devices = [Device(env, next(index), gi, model, costs[name], weights, self) for _ in range(n)]
            if gangs is None:
                for d in devices:
                    d.policy = make_policy(d)
                    env.process(d.policy.serve(d))
                self.gangs.append(None)
            else:
                self.gangs.append(GangScheduler(env, self, gi, devices, node_sizes[gi], gangs))
            self.groups.append(devices)
        self.devices = [d for g in self.groups for d in g]
        self._rr = [0] * len(groups)
        self._never_fits: dict[int, str | None] = {}  # per RequestClass key
        for c in classes:
            for s in c.pipeline.stages:
                if self.group_of(s.name) is None:
                    raise UserError(f"cluster: no group serves stage {s.name!r} of {c.name}")

    def group_of(self, stage_name: str) -> int | None:
        return self.placement.get(stage_name, self.default_group)

    def weights_bytes(self, gi: int, classes: list[RequestClass]) -> int:
        """Parameters of every model some stage of which runs on group gi, each counted once."""
        seen: dict[tuple[str, str], int] = {}
        for c in classes:
            for s in c.pipeline.stages:
                if self.group_of(s.name) == gi:
                    seen.setdefault((c.pipeline.workload, s.weights), s.graph().totals.weight_bytes)
        return sum(seen.values())

    def stages_in_group(self, r: Request, gi: int):
        return [s for s in r.cls.pipeline.stages if self.group_of(s.name) == gi]

    # -- arrival and routing ----------------------------------------------------------------------

    def submit(self, r: Request) -> None:
        self.metrics.arrived(r)
        reason = self.never_fits(r)
        if reason:
            self.metrics.rejected(r, reason)
            if r.on_done is not None:
                r.on_done.succeed()
            return
        self.route(r)

    def never_fits(self, r: Request) -> str | None:
        """Why r could not run even on an empty device (the same for every request of its class)."""
        key = r.cls.key
        if key not in self._never_fits:
            self._never_fits[key] = self._never_fits_reason(r)
        return self._never_fits[key]

    def _never_fits_reason(self, r: Request) -> str | None:
        for s in r.cls.pipeline.stages:
            d = self.groups[self.group_of(s.name)][0]
            at = d.costs.at(s, s.batch)
            need = d.policy.alone_bytes(d, r, s)
            if d.weights_bytes + need > d.capacity_bytes:
                return (f"{s.name} needs {need / GB:.2f} GB (activations {at.activation_bytes / GB:.2f}, "
                        f"resident KV and step cache {d.resident_need(r) / GB:.2f}) beside {d.weights_bytes / GB:.2f} GB of weights "
                        f"on a {d.model.device.name} of {d.capacity_bytes / GB:.0f} GB")
        return None

    def route(self, r: Request) -> None:
        gi = self.group_of(r.stage.name)
        if self.gangs[gi] is not None:
            self.gangs[gi].enqueue(r)
            return
        devices = self.groups[gi]
        if len(devices) == 1:
            d = devices[0]
        elif self.router == "round-robin":
            d = devices[self._rr[gi] % len(devices)]
            self._rr[gi] += 1
        elif self.router == "least-loaded":  # fewest requests assigned; ties to the lowest index
            loads = [x.assigned for x in devices]
            d = devices[loads.index(min(loads))]
        else:  # bucket-affinity: one bucket's requests always on the same devices
            bucket = devices[0].policy.bucket_of(r)
            d = devices[bucket % len(devices)]
        r.device = d
        d.assigned += 1
        d.enqueue(r)

    # -- progress -------------------------------------------------------------------------------

    def stage_done(self, r: Request, device: Device) -> None:
        """r finished its current stage on `device`: next stage here, elsewhere, or done."""
        here = device.group
        stays = self.stage_ends(r, here)
        if not stays:
            device.release(r)
            device.assigned -= 1
            self.left_group(r, here)
        else:
            device.enqueue(r)

    def stage_ends(self, r: Request, here: int) -> bool:
        """r's current stage ended: note a prefill's first token, move it on; whether its next stage is here."""
        if r.stage_index == r.cls.prefill_index:  # a prefill emits the first output token
            r.first_token_s = r.last_token_s = self.env.now
        return r.next_stage() and self.group_of(r.stage.name) == here

    def left_group(self, r: Request, here: int) -> None:
        """r left group `here` (its device released): done, or routed to its next stage's group."""
        if r.stage_index == len(r.cls.pipeline.stages):
            r.done_s = self.env.now
            r.device = None
            self.metrics.completed(r)
            if r.on_done is not None:
                r.on_done.succeed()
        else:
            self.route(r)

    def in_flight(self) -> int:
        """Requests on some device or in a gang queue now (queued, admitted or running)."""
        return sum(d.assigned for d in self.devices) + sum(g.assigned for g in self.gangs if g is not None)
