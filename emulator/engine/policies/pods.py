"""pods: k requests co-resident on one device, each on its own stream, denoising loops staggered.

Each member runs its own request's pipeline, one call after another, as a
separate process would (its own host thread, its own CUDA stream). Members'
kernels co-run under the concurrency model (`emulator.engine.concurrency`):
every call is a sequence of segments of one character in alone time, and at
every moment all members progress at the same rate 1 / slowdown(summed
demands). Because the rate is shared, offsets between members measured in
alone time never drift: a member that starts its denoising loop a fraction
`stagger` of a UNet pass after another stays that far behind, so one member's
compute-heavy high-resolution levels meet the other's memory-heavy ones. Slot
j of the pod starts its loop at phase j x stagger of the pass; a member
reaching its loop waits (idle) for its slot's phase. With stagger 0 the members
run the same kernels at the same time.

Members join and leave at call boundaries. Each member holds the memory of
its largest call (and its KV caches) while it is in the pod. The same
configuration of members recurs every pass in steady state, so the advance
from one call boundary to the next is memoized on the members' positions.
Each member runs its own calls, so under a per-call schedule (step caching,
guidance on part of the steps) each call is its own kind's kernels, exactly;
the stagger is a fraction of the member's first loop call.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from operator import attrgetter

from emulator.engine.concurrency import co_run
from emulator.engine.policies.base import BatchPolicy

NS = 1e9  # positions are memoized to the nanosecond
MEMO_ENTRIES = 200_000  # bound on the memo (members joining at arbitrary phases make new keys)
EPS_S = 1e-12
PART = attrgetter("part")


def part_of(segments: tuple, index: int, left_s: float, wait_s: float) -> tuple:
    """A member's share of the memo key: its call's segments, segment index, alone ns left, idle ns left."""
    return id(segments), index, round(left_s * NS), round(wait_s * NS)


@dataclass(eq=False)
class Member:
    request: object
    segments: tuple = ()
    state: tuple = (0, 0.0, 0.0)  # (segment running, alone s left in it, alone s to idle before the call: stagger)
    part: tuple = ()  # its share of the memo key (`part_of` its state)
    slot: int | None = None  # stagger slot while in its denoising loop
    stream: int = 0  # its track in the trace
    call_start_s: float = 0.0  # wall time the call began
    at: object = None  # costs of its current stage at its batch
    seq_len: int = 0  # longest attention sequence of its current stage


@dataclass(frozen=True)
class Advance:
    """Co-running the members from one call boundary to the next (a memo entry)."""

    wall_s: float
    busy_s: float  # of which some member was running
    alone_s: float  # alone time every member advanced by
    flops: float
    bytes: float
    ended: tuple[int, ...]  # indices of the members whose call ended
    states: tuple[tuple, ...]  # per member: (its state after, its key part after)


class Pods(BatchPolicy):
    @dataclass(frozen=True)
    class Params:
        pod_size: int = field(default=2, metadata={"min": 1})  # co-resident requests
        stagger: float = field(default=0.5, metadata={"min": 0, "max": 1})  # of a UNet pass, between slots

    def __init__(self, params, device):
        super().__init__(params, device)
        self.members: list[Member] = []
        self.clock_s = 0.0  # alone seconds elapsed on the pod: every member advances by this much
        self.origin_s: float | None = None  # clock when slot 0's loop started a pass
        self.memo: dict = {}
        self.seq_len: int | None = None  # longest attention sequence of the members (None: to recompute)

    def key_of(self, r):
        return None

    def alone_bytes(self, device, r, stage) -> int:
        return device.resident_need(r) + self.activation_need(device, r)

    @staticmethod
    def activation_need(device, r) -> int:
        stages = device.cluster.stages_in_group(r, device.group)
        return max(device.costs.at(s, s.batch).activation_bytes for s in stages)

    # -- the device process ---------------------------------------------------------------------------

    def serve(self, device):
        env, members, size = device.env, self.members, self.params.pod_size
        work = device.cluster.metrics.work
        while True:
            if device.queue:
                self.take_queued(device)
            if len(members) < size:
                self.join(device)
                if not members:
                    self.origin_s = None
                    yield device.wait()
                    continue
            start = env.now
            run = self.advance()
            ended = [members[i] for i in run.ended]
            if self.seq_len is None:
                self.seq_len = max(m.seq_len for m in members)
            used = device.used_bytes
            yield env.timeout(run.wall_s)
            now = env.now
            work(device, start, now, run.flops, run.bytes, run.busy_s, used, self.seq_len, len(members))
            for m in ended:
                self.end_call(device, m, now)

    def join(self, device) -> None:
        heap = self.waiting.get(None)
        while heap and len(self.members) < self.params.pod_size:
            r = heap[0][2]
            if not device.is_admitted(r):
                extra = self.activation_need(device, r)
                if not device.fits(device.resident_need(r), extra):
                    return
                device.reserve(r, extra)
            heapq.heappop(heap)
            m = Member(r, stream=min(set(range(self.params.pod_size)) - {x.stream for x in self.members}))
            self.members.append(m)
            self.start_call(device, m, device.env.now)

    def start_call(self, device, m: Member, now: float) -> None:
        r = m.request
        if r.calls_done == 0 or m.at is None:
            m.at = device.costs.at(r.stage, r.stage.batch)
            m.seq_len = device.costs.seq_len(r.stage)
            self.seq_len = None
        at = m.at
        segments = m.segments = at.segments(r.calls_done)
        m.call_start_s = now
        if r.first_start_s is None:
            r.first_start_s = now
        wait_s = 0.0
        if r.calls_done == 0 and r.stage is r.cls.loop_stage and r.stage.calls > 1:
            wait_s = self.take_slot(m, at.step(0).seconds)
        m.state = (0, segments[0].alone_s, wait_s)
        m.part = part_of(segments, *m.state)

    def take_slot(self, m: Member, pass_s: float) -> float:
        """Give m the first free stagger slot; the alone seconds it idles until its slot's phase."""
        taken = {x.slot for x in self.members if x.slot is not None}
        if not taken:
            self.origin_s = self.clock_s
        m.slot = min(set(range(self.params.pod_size)) - taken)
        target = self.origin_s + m.slot * self.params.stagger * pass_s
        wait_s = (target - self.clock_s) % pass_s
        if wait_s * NS < 1 or pass_s - wait_s < EPS_S:
            wait_s = 0.0
        return wait_s

    def end_call(self, device, m: Member, now: float) -> None:
        r = m.request
        stage = r.stage
        metrics = device.cluster.metrics
        metrics.call(device, m.call_start_s, now, stage.name, [r], m.at.step(r.calls_done).fallback_ops, 1,
                     m.stream)
        r.calls_done += 1
        if stage.kv_growth:
            metrics.tokens([r], m.call_start_s, None, now)
        if r.calls_done < stage.calls:
            self.start_call(device, m, now)
            return
        if stage is r.cls.loop_stage:
            m.slot = None
        device.cluster.stage_done(r, device)
        if r.device is device and r in device.queue:  # its next stage runs here too: it stays a member
            device.queue.remove(r)
            self.start_call(device, m, now)
        else:
            self.members.remove(m)
            self.seq_len = None

    # -- the fluid advance ------------------------------------------------------------------------------

    def advance(self) -> Advance:
        """Co-run the members until the first call ends; their states move on, the pod's clock too."""
        members = self.members
        key = tuple(map(PART, members))
        found = self.memo.get(key)
        if found is None:
            if len(self.memo) >= MEMO_ENTRIES:
                self.memo.clear()
            found = self.memo[key] = self.co_run(members)
        for m, (state, part) in zip(members, found.states):
            m.state, m.part = state, part
        self.clock_s += found.alone_s
        return found

    @staticmethod
    def co_run(members: list[Member]) -> Advance:
        run = co_run([(m.segments, *m.state) for m in members])
        states = tuple((s, part_of(m.segments, *s)) for m, s in zip(members, run.states))
        return Advance(run.wall_s, run.busy_s, run.alone_s, run.flops, run.bytes, run.ended, states)
