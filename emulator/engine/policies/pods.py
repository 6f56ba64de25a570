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

A full pod changes nothing outside itself at most call boundaries: nobody can
join, and the member whose call ended only starts its stage's next call. Such
boundaries are passed without a simulated wait each: the pod runs on to the
first boundary where a stage ends, a member decodes, or the device's open time
bin of the metrics would close, and waits once, until then. The passed
boundaries' work and calls are recorded, in their order and with their own
times, when the simulation reaches that boundary (or, for those before its
end, when a run stops at its horizon first), so every output is the same as
with a wait per boundary (`COALESCE` False). With a trace, which is written in
event order over all devices, the pod waits at every boundary.
"""

from __future__ import annotations

import bisect
import heapq
import math
from dataclasses import dataclass, field
from operator import attrgetter, itemgetter

from emulator.engine.concurrency import co_run
from emulator.engine.policies.base import BatchPolicy

NS = 1e9  # positions are memoized to the nanosecond
MEMO_ENTRIES = 200_000  # bound on the memo (members joining at arbitrary phases make new keys)
EPS_S = 1e-12
PART = attrgetter("part")
END = itemgetter(1)
COALESCE = True  # pass call boundaries that change nothing outside the pod without a simulated wait each


def delay_to(now_s: float, end_s: float) -> float:
    """The delay that brings the clock from now_s to exactly end_s (SimPy adds it to now_s)."""
    d = end_s - now_s
    while now_s + d < end_s:
        d = math.nextafter(d, math.inf)
    while now_s + d > end_s:
        d = math.nextafter(d, -math.inf)
    return d


def part_of(segments: tuple, index: int, left_s: float, wait_s: float) -> tuple:
    """A member's share of the memo key: its call's segments, segment index, alone ns left, idle ns left."""
    return id(segments), index, round(left_s * NS), round(wait_s * NS)


@dataclass(eq=False)
class Member:
    request: object
    segments: tuple = ()
    state: tuple = (0, 0.0, 0.0)  # (segment running, alone s left in it, alone s to idle before the call: stagger)
    part: tuple = ()  # its share of the memo key (`part_of` its state)
    fresh: tuple = ()  # (state, part) at the start of a call of its segments, without idling
    passed: list = field(default_factory=list)  # end s of its passed calls not yet recorded
    passed_from: tuple = (0.0, 0)  # (start s, index) of the first of them
    plain_calls: int = 0  # calls of its stage before which a call's end changes nothing outside the pod
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
        self.device = device
        self.members: list[Member] = []
        self.clock_s = 0.0  # alone seconds elapsed on the pod: every member advances by this much
        self.origin_s: float | None = None  # clock when slot 0's loop started a pass
        self.memo: dict = {}
        self.seq_len: int | None = None  # longest attention sequence of the members (None: to recompute)
        self.pending: list = []  # work of passed call boundaries: (start s, end s, FLOPs, bytes, busy s)
        self.pending_work = (0, 0, 0)  # what the passed boundaries' `Metrics.work` has: used bytes, seq_len, running

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
        metrics = device.cluster.metrics
        coalesce = COALESCE and not metrics.trace  # a trace is written in event order over all devices
        if coalesce:
            metrics.before_finish(self.report_before)
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
            if self.seq_len is None:
                self.seq_len = max(m.seq_len for m in members)
            used = device.used_bytes
            end = start + run.wall_s
            if coalesce and len(members) == size:  # full: nobody joins at its boundaries
                self.pending_work = (used, self.seq_len, size)
                start, end, run = self.pass_boundaries(device, start, end, run)
            yield env.timeout(delay_to(env.now, end))
            self.report_before()
            metrics.work(device, start, end, run.flops, run.bytes, run.busy_s, used, self.seq_len, len(members))
            for m in [members[i] for i in run.ended]:  # taken first: a member that leaves shifts the others
                self.end_call(device, m, end)

    def pass_boundaries(self, device, start: float, end: float, run: Advance) -> tuple:
        """Pass the call boundaries, from `end` on, that change nothing outside the pod (its members only go on to
        their stage's next call) and whose work adds to the device's open time bin: each member's next call starts
        at once, the records wait (`pending`, members' `passed`) for the simulation to reach them. Returns the
        (start, end, advance) of the call to wait for."""
        metrics = device.cluster.metrics
        res, open_bin = metrics.resolution_s, metrics.open_bin(device)
        if int(start / res) != open_bin:
            return start, end, run
        members, pending, advance, next_call = self.members, self.pending, self.advance, self.next_call
        while int(end / res) == open_bin:
            for i in run.ended:
                m = members[i]
                if m.request.calls_done + 1 >= m.plain_calls:
                    return start, end, run
            pending.append((start, end, run.flops, run.bytes, run.busy_s))
            for i in run.ended:
                next_call(members[i], end)
            start = end
            run = advance()
            end = start + run.wall_s
        return start, end, run

    @staticmethod
    def next_call(m: Member, now: float) -> None:
        """m's call ended at `now` (noted in `passed`) and its stage's next call starts."""
        r = m.request
        if not m.passed:
            m.passed_from = (m.call_start_s, r.calls_done)
        m.passed.append(now)
        r.calls_done += 1
        if r.stage.schedule is not None:  # its calls differ in kind (else all are the stage's one call)
            segments = m.at.segments(r.calls_done)
            if segments is not m.segments:
                Pods.new_segments(m, segments)
        m.state, m.part = m.fresh
        m.call_start_s = now

    def report_before(self, end_s: float | None = None) -> None:
        """Record the passed call boundaries before end_s (None: all, the pod's wait has ended)."""
        device = self.device
        metrics = device.cluster.metrics
        spans = self.pending
        if end_s is not None:
            del spans[bisect.bisect_left(spans, end_s, key=END):]
        used, seq_len, running = self.pending_work
        metrics.work_in_open_bin(device, spans, used, seq_len, running)
        spans.clear()
        for m in self.members:
            ends = m.passed
            n = len(ends) if end_s is None else bisect.bisect_left(ends, end_s)
            if n:
                start_s, first = m.passed_from
                r = m.request
                if r.stage.schedule is None:  # every call of the stage is the same call
                    fallback_ops = n * m.at.step(first).fallback_ops
                else:
                    fallback_ops = sum(m.at.step(c).fallback_ops for c in range(first, first + n))
                metrics.call(device, start_s, ends[n - 1], r.stage.name, [r], fallback_ops, n, m.stream)
            ends.clear()

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
            m.plain_calls = 0 if r.stage.kv_growth else r.stage.calls  # calls before which a call's end is plain
            self.seq_len = None
        at = m.at
        segments = at.segments(r.calls_done)
        if segments is not m.segments:
            self.new_segments(m, segments)
        m.call_start_s = now
        if r.first_start_s is None:
            r.first_start_s = now
        wait_s = 0.0
        if r.calls_done == 0 and r.stage is r.cls.loop_stage and r.stage.calls > 1:
            wait_s = self.take_slot(m, at.step(0).seconds)
        if wait_s:
            m.state = (0, segments[0].alone_s, wait_s)
            m.part = part_of(segments, *m.state)
        else:
            m.state, m.part = m.fresh

    @staticmethod
    def new_segments(m: Member, segments: tuple) -> None:
        """m's call runs these segments: its state and key part at the call's start, without idling."""
        m.segments = segments
        state = (0, segments[0].alone_s, 0.0)
        m.fresh = state, part_of(segments, *state)

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

    @staticmethod
    def call_record(device, m: Member, now: float) -> tuple:
        """The arguments of `Metrics.call` for m's call ending at `now`."""
        r = m.request
        return device, m.call_start_s, now, r.stage.name, [r], m.at.step(r.calls_done).fallback_ops, 1, m.stream

    def end_call(self, device, m: Member, now: float) -> None:
        r = m.request
        stage = r.stage
        metrics = device.cluster.metrics
        metrics.call(*self.call_record(device, m, now))
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
        for m, (m.state, m.part) in zip(members, found.states):  # each member's state and key part after
            pass
        self.clock_s += found.alone_s
        return found

    @staticmethod
    def co_run(members: list[Member]) -> Advance:
        run = co_run([(m.segments, *m.state) for m in members])
        states = tuple((s, part_of(m.segments, *s)) for m, s in zip(members, run.states))
        return Advance(run.wall_s, run.busy_s, run.alone_s, run.flops, run.bytes, run.ended, states)
