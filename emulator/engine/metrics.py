"""Streamed metrics of one run: request rows, a binned time series, and the summary.

Nothing is kept per step, nor per request once it is done. A request's row is
written when it completes or is rejected (the rest when the run ends, as in
flight). Its latency and queueing delay go to `Spill`s: a small buffer that
overflows into an unnamed temporary file, so memory stays bounded however
many requests a run serves. The summary's percentiles are exact and equal
numpy's (`np.percentile`, linear): up to IN_MEMORY values they are computed
by numpy itself, past it by radix selection over the spilled values in
chunks, interpolated as numpy does; means past IN_MEMORY are sums of chunk
sums, equal to numpy's up to rounding. Each device accumulates its current
time bin (busy time, FLOPs, bytes, peak memory, time-weighted sequence length
and running requests) and writes the bin's row once its calls have moved past
it.

Token metrics, for requests of an autoregressive (KV-growing) stage: the
first output token comes out at the end of the prefill (or, without one, of
the first decode call), each decode call emits one more. TTFT is arrival to
the first token; TPOT is (last token - first token) / (output tokens - 1),
for LLaMA (done - first token) / (output tokens - 1); the time between tokens
is every gap between consecutive tokens of a request (a decode call run back
to back with others ends at its own time within the run), summarized over all
gaps of all requests. Other requests leave these blank in requests.csv and out
of the summaries (None when no request has them). A class's SLOs (end to end,
TTFT, TPOT, whichever it sets) are met when all are; the attainment counts
completed requests of classes with any SLO.

A policy that pages the KV cache (`chunked-prefill`) reports its blocks in use
and its pool (`kv`): each bin's `kv_GB` is the most in use during the bin, and
`kv_capacity_GB` the pool; both are blank for policies that reserve whole KV
caches at admission (their KV is in `memory_GB`). Its preemptions are counted
(`preempted`) in the summary's `preemptions`.
"""

from __future__ import annotations

import csv
import tempfile
from array import array
from pathlib import Path

import numpy as np

from emulator.engine.trace import TraceWriter

GB = 1e9
REQUEST_COLUMNS = ("id", "class", "workload", "prompt_tokens", "output_tokens", "status", "arrival_s",
                   "first_start_s", "done_s", "latency_s", "queueing_s", "ttft_s", "tpot_s", "slo_s", "slo_met",
                   "reason")
SERIES_COLUMNS = ("time_s", "device", "busy_pct", "tflops", "hbm_util_pct", "memory_GB", "capacity_GB",
                  "seq_len", "running", "queued", "kv_GB", "kv_capacity_GB")


SPILL_VALUES = 8192  # values a Spill buffers before writing them to its file
CHUNK_VALUES = 1 << 16  # values a Spill reads back at a time
IN_MEMORY = 1 << 20  # up to this many values (8 MiB) are summarized in one array; past it, chunk by chunk
DIGIT_BITS = 16  # radix selection: bits of the ordered key decided per pass over the values
PERCENTILES = (50, 90, 99)


class Spill:
    """Float64 values appended through a bounded buffer to an unnamed temporary file, read back in chunks."""

    def __init__(self):
        self.count = 0
        self.buffer = array("d")
        self.file = None  # opened when the buffer first fills
        self.spilled = 0  # values in the file

    def append(self, value: float) -> None:
        self.buffer.append(value)
        self.count += 1
        if len(self.buffer) >= SPILL_VALUES:
            if self.file is None:
                self.file = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close)
            self.buffer.tofile(self.file)
            self.spilled += len(self.buffer)
            self.buffer = array("d")

    def chunks(self):
        """The values in order, as arrays of at most CHUNK_VALUES values (and the buffer's)."""
        if self.file is not None:
            self.file.seek(0)
            for start in range(0, self.spilled, CHUNK_VALUES):
                n = min(CHUNK_VALUES, self.spilled - start)
                yield np.frombuffer(self.file.read(8 * n), dtype=float)
        if self.buffer:
            yield np.array(self.buffer, dtype=float)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def ordered_keys(values: np.ndarray) -> np.ndarray:
    """Unsigned 64-bit keys in the order of the float64 values (negative values flipped, positive ones signed)."""
    bits = values.view(np.uint64)
    return np.where(bits >> 63 == 1, ~bits, bits | np.uint64(1 << 63))


def matching(spill: Spill, prefix: int, bits: int):
    """The values whose keys start with the `bits`-bit `prefix` (all values for 0 bits), with their keys."""
    for values in spill.chunks():
        keys = ordered_keys(values)
        if bits:
            mask = keys >> (64 - bits) == prefix
            values, keys = values[mask], keys[mask]
        yield values, keys


def order_statistic(spill: Spill, k: int) -> float:
    """The k-th smallest value (0-based) in bounded memory: radix selection over the ordered keys, DIGIT_BITS
    a pass, until at most IN_MEMORY candidates are left to sort (or all candidates are equal)."""
    prefix, bits, left = 0, 0, spill.count
    while left > IN_MEMORY and bits < 64:
        shift = 64 - bits - DIGIT_BITS
        counts = np.zeros(1 << DIGIT_BITS, dtype=np.int64)
        for _, keys in matching(spill, prefix, bits):
            digits = ((keys >> shift) & ((1 << DIGIT_BITS) - 1)).astype(np.intp)
            counts += np.bincount(digits, minlength=1 << DIGIT_BITS)
        below = np.cumsum(counts)
        digit = int(np.searchsorted(below, k, side="right"))
        k -= int(below[digit - 1]) if digit else 0
        prefix, bits, left = (prefix << DIGIT_BITS) | digit, bits + DIGIT_BITS, int(counts[digit])
    if bits == 64:  # every candidate has the same bit pattern
        return float(next(v for v, _ in matching(spill, prefix, bits) if len(v))[0])
    candidates = np.concatenate([v for v, _ in matching(spill, prefix, bits)])
    return float(np.partition(candidates, k)[k])


def streamed_percentiles(spill: Spill, q: tuple) -> list[float]:
    """np.percentile(values, q) (method linear) from order statistics, with numpy's own arithmetic."""
    n = spill.count
    virtual = (n - 1) * np.true_divide(q, 100)
    lower = np.floor(virtual).astype(np.intp)
    upper = np.minimum(lower + 1, n - 1)
    gamma = virtual - lower
    a = np.array([order_statistic(spill, int(i)) for i in lower])
    b = np.array([order_statistic(spill, int(i)) for i in upper])
    diff = b - a
    result = a + diff * gamma
    np.subtract(b, diff * (1 - gamma), out=result, where=gamma >= 0.5)
    return [float(x) for x in result]


def distribution(spill: Spill) -> dict:
    """p50, p90, p99 and mean of a spill's values (None when it is empty)."""
    if not spill.count:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    if spill.count <= IN_MEMORY:
        a = np.concatenate(list(spill.chunks()))
        p50, p90, p99 = (float(x) for x in np.percentile(a, PERCENTILES))
        mean = float(a.mean())
    else:
        p50, p90, p99 = streamed_percentiles(spill, PERCENTILES)
        mean = float(sum(float(c.sum()) for c in spill.chunks()) / spill.count)
    return {"p50": p50, "p90": p90, "p99": p99, "mean": mean}


def token_times(r) -> tuple[float | None, float | None]:
    """(TTFT, TPOT) of a request: TTFT once its first token is out, TPOT once it is done and emitted two or
    more; None where not (and for requests without an autoregressive stage)."""
    first = r.first_token_s
    if first is None:
        return None, None
    n = r.cls.tokens_out
    tpot = (r.last_token_s - first) / (n - 1) if r.done_s is not None and n > 1 else None
    return first - r.arrival_s, tpot


def slo_met(c, latency: float, ttft: float | None, tpot: float | None) -> bool:
    """Whether a done request met every SLO its class sets (a token SLO without its measure is not met)."""
    return ((c.slo_s is None or latency <= c.slo_s)
            and (c.ttft_slo_s is None or (ttft is not None and ttft <= c.ttft_slo_s))
            and (c.tpot_slo_s is None or (tpot is not None and tpot <= c.tpot_slo_s)))


class DeviceSeries:
    """One device's totals and its open time bin."""

    def __init__(self, device):
        self.device = device
        self.busy_s = self.flops = self.bytes = 0.0
        self.fallback_ops = 0
        self.bin = 0
        self.peak_hbm_util = 0.0
        self.kv_now = 0  # KV bytes in use now (paging policies)
        self.kv_capacity: int | None = None  # the KV pool's bytes (None: the policy does not page)
        self.reset()

    def reset(self) -> None:
        self.b_busy = self.b_flops = self.b_bytes = self.b_seq = self.b_running = 0.0
        self.b_memory = self.device.used_bytes
        self.b_kv = self.kv_now


class Metrics:
    def __init__(self, out_dir: Path | None, resolution_s: float, trace: bool):
        self.resolution_s = resolution_s
        self.out_dir = out_dir
        self.n_arrived = self.n_completed = self.n_rejected = self.calls = self.steps = 0
        self.preemptions: dict[str, int] = {}  # per mode (recompute, swap)
        self.latency, self.queueing = Spill(), Spill()
        self.ttft, self.tpot, self.tbt = Spill(), Spill(), Spill()
        self.slo_total = self.slo_met = 0
        self.per_class: dict[str, Spill] = {}
        self.reasons: dict[str, int] = {}
        self.live: dict[int, object] = {}  # arrived, neither completed nor rejected
        self.series: list[DeviceSeries] = []
        self._requests = self._timeseries = None
        self.trace = None
        self._before_finish: list = []  # report(end_s) callables
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._requests_file = open(out_dir / "requests.csv", "w", newline="")  # noqa: SIM115 (streamed, closed in close_outputs)
            self._requests = csv.writer(self._requests_file)
            self._requests.writerow(REQUEST_COLUMNS)
            self._timeseries_file = open(out_dir / "timeseries.csv", "w", newline="")  # noqa: SIM115
            self._timeseries = csv.writer(self._timeseries_file)
            self._timeseries.writerow(SERIES_COLUMNS)
            self.trace = TraceWriter(out_dir / "trace.json") if trace else None

    def attach(self, devices) -> None:
        self.series = [DeviceSeries(d) for d in devices]
        if self.trace:
            for d in devices:
                self.trace.device(d.index, d.model.device.name)

    # -- requests -------------------------------------------------------------------------------------

    def arrived(self, r) -> None:
        self.n_arrived += 1
        self.live[r.id] = r

    def rejected(self, r, reason: str) -> None:
        self.n_rejected += 1
        del self.live[r.id]
        self.reasons[reason] = self.reasons.get(reason, 0) + 1
        self._row(r, "rejected", reason)

    def completed(self, r) -> None:
        self.n_completed += 1
        del self.live[r.id]
        latency = r.done_s - r.arrival_s
        self.latency.append(latency)
        self.queueing.append(r.first_start_s - r.arrival_s)
        per_class = self.per_class.get(r.cls.name)
        if per_class is None:
            per_class = self.per_class[r.cls.name] = Spill()
        per_class.append(latency)
        ttft, tpot = token_times(r)
        if ttft is not None:
            self.ttft.append(ttft)
        if tpot is not None:
            self.tpot.append(tpot)
        if r.cls.has_slo:
            self.slo_total += 1
            self.slo_met += slo_met(r.cls, latency, ttft, tpot)
        self._row(r, "completed", "")

    def tokens(self, members: list, start_s: float, per_call: list[float] | None, end_s: float) -> None:
        """Each member in its decode stage emitted a token at the end of each call: calls of `per_call` seconds
        back to back from start_s to end_s (None: one call, ending at end_s)."""
        ends = [end_s]
        if per_call is not None and len(per_call) > 1:
            ends, t = [], start_s
            for seconds in per_call[:-1]:
                t += seconds
                ends.append(t)
            ends.append(end_s)
        gaps = self.tbt
        for r in members:
            if r.stage_index != r.cls.decode_index:
                continue
            last = r.last_token_s
            for t in ends:
                if last is None:
                    r.first_token_s = t
                else:
                    gaps.append(t - last)
                last = t
            r.last_token_s = last

    def _row(self, r, status: str, reason: str) -> None:
        if self._requests is None:
            return
        latency = r.done_s - r.arrival_s if r.done_s is not None else None
        queueing = r.first_start_s - r.arrival_s if r.first_start_s is not None else None
        ttft, tpot = token_times(r)
        c = r.cls
        met = "" if not c.has_slo or latency is None else slo_met(c, latency, ttft, tpot)
        self._requests.writerow((r.id, c.name, c.pipeline.workload, c.prompt_tokens, c.output_tokens, status,
                                 r.arrival_s, r.first_start_s, r.done_s, latency, queueing, ttft, tpot, c.slo_s, met,
                                 reason))

    def preempted(self, r, mode: str) -> None:
        """A running request gave up its KV blocks (`mode`: recompute or swap); it stays in flight."""
        self.preemptions[mode] = self.preemptions.get(mode, 0) + 1

    # -- devices --------------------------------------------------------------------------------------

    def kv(self, device, now_s: float, in_use_bytes: int, capacity_bytes: int) -> None:
        """A paging policy's KV blocks in use from `now_s` on (calls in time order per device, as `work`)."""
        s = self.series[device.index]
        while s.bin < int(now_s / self.resolution_s):
            self._flush(s)
        s.kv_now, s.kv_capacity = in_use_bytes, capacity_bytes
        s.b_kv = max(s.b_kv, in_use_bytes)

    def call(self, device, start_s: float, end_s: float, stage: str, members: list, fallback_ops: int,
             calls: int = 1, stream: int = 0) -> None:
        """`calls` back-to-back calls of a stage for `members` ended: calls x members step events."""
        self.calls += calls
        self.steps += calls * len(members)
        self.series[device.index].fallback_ops += fallback_ops
        if self.trace:
            self.trace.slice(device.index, stream, start_s, end_s, stage,
                             {"requests": [m.id for m in members], "calls": calls})

    def work(self, device, start_s: float, end_s: float, flops: float, moved: float, busy_s: float,
             used_bytes: int, seq_len: int, running: int) -> None:
        """What the device did over [start_s, end_s]; calls must come in time order per device."""
        s = self.series[device.index]
        s.busy_s += busy_s
        s.flops += flops
        s.bytes += moved
        span = end_s - start_s
        res = self.resolution_s
        first, last = int(start_s / res), int(end_s / res)
        if first == last == s.bin:  # the common case, inlined
            s.b_busy += busy_s
            s.b_flops += flops
            s.b_bytes += moved
            s.b_seq += span * seq_len
            s.b_running += span * running
            s.b_memory = max(s.b_memory, used_bytes)
            return
        while s.bin < first:
            self._flush(s)
        if first == last or span <= 0:
            self._add(s, 1.0, flops, moved, busy_s, used_bytes, seq_len, running, span)
            return
        for b in range(first, last + 1):  # spread evenly over the bins it spans
            while s.bin < b:
                self._flush(s)
            lo, hi = max(start_s, b * res), min(end_s, (b + 1) * res)
            if hi > lo:
                f = (hi - lo) / span
                self._add(s, f, flops, moved, busy_s, used_bytes, seq_len, running, span)

    def work_in_open_bin(self, device, spans: list, used_bytes: int, seq_len: int, running: int) -> None:
        """`work` over each (start_s, end_s, flops, moved, busy_s) of `spans`, in order, all inside the device's
        open time bin (`open_bin`): the same sums, without a call each."""
        s = self.series[device.index]
        busy, flops, moved = s.busy_s, s.flops, s.bytes
        b_busy, b_flops, b_bytes, b_seq, b_running = s.b_busy, s.b_flops, s.b_bytes, s.b_seq, s.b_running
        for start_s, end_s, f, m, busy_s in spans:
            busy += busy_s
            flops += f
            moved += m
            span = end_s - start_s
            b_busy += busy_s
            b_flops += f
            b_bytes += m
            b_seq += span * seq_len
            b_running += span * running
        s.busy_s, s.flops, s.bytes = busy, flops, moved
        s.b_busy, s.b_flops, s.b_bytes, s.b_seq, s.b_running = b_busy, b_flops, b_bytes, b_seq, b_running
        if spans:
            s.b_memory = max(s.b_memory, used_bytes)

    def open_bin(self, device) -> int:
        """The device's open time bin: `work` over [start_s, end_s] with int(start_s / resolution_s) and
        int(end_s / resolution_s) both equal to it only adds to it (writes no row)."""
        return self.series[device.index].bin

    def before_finish(self, report) -> None:
        """Have `report(end_s)` called when the run ends, before the last bins are written: a device process
        that records its calls after they ended records then those that ended before end_s."""
        self._before_finish.append(report)

    @staticmethod
    def _add(s: DeviceSeries, f: float, flops, moved, busy_s, used_bytes, seq_len, running, span) -> None:
        s.b_busy += f * busy_s
        s.b_flops += f * flops
        s.b_bytes += f * moved
        s.b_seq += f * span * seq_len
        s.b_running += f * span * running
        s.b_memory = max(s.b_memory, used_bytes)

    def _flush(self, s: DeviceSeries) -> None:
        res = self.resolution_s
        d = s.device
        util = s.b_bytes / (res * d.model.device.bytes_per_s)
        s.peak_hbm_util = max(s.peak_hbm_util, util)
        t = s.bin * res
        paged = s.kv_capacity is not None
        if self._timeseries is not None:
            self._timeseries.writerow((round(t, 9), d.index, 100 * s.b_busy / res, s.b_flops / res / 1e12,
                                       100 * util, s.b_memory / GB, d.capacity_bytes / GB,
                                       s.b_seq / res, s.b_running / res, d.policy.waiting_count() + len(d.queue),
                                       s.b_kv / GB if paged else "", s.kv_capacity / GB if paged else ""))
        if s.b_memory > d.capacity_bytes:
            raise RuntimeError(f"device {d.index}: memory {s.b_memory} exceeds capacity at t={t}")
        if paged and s.b_kv > s.kv_capacity:
            raise RuntimeError(f"device {d.index}: KV blocks of {s.b_kv} bytes exceed the pool at t={t}")
        if self.trace:
            self.trace.counter(d.index, t, "hbm_util_pct", 100 * util)
            self.trace.counter(d.index, t, "memory_GB", s.b_memory / GB)
        s.bin += 1
        s.reset()

    # -- end ------------------------------------------------------------------------------------------

    def finish(self, end_s: float) -> None:
        for report in self._before_finish:
            report(end_s)
        last = int(end_s / self.resolution_s)
        for s in self.series:
            while s.bin <= last:
                self._flush(s)
        for r in list(self.live.values()):
            self._row(r, "in_flight", "")
        if self.trace:
            self.trace.end()
        self.close_outputs()

    def close_outputs(self) -> None:
        """Close the output files (again is harmless)."""
        if self._requests is not None:
            self._requests_file.close()
            self._timeseries_file.close()
        if self.trace:
            self.trace.close()

    def close(self) -> None:
        """Close every file, the spills too: after `summary`, or when the run failed."""
        self.close_outputs()
        for spill in (self.latency, self.queueing, self.ttft, self.tpot, self.tbt, *self.per_class.values()):
            spill.close()

    def summary(self, end_s: float) -> dict:
        n = len(self.series)
        span = max(end_s, 1e-12)
        devices = [s.device for s in self.series]
        bandwidth = sum(d.model.device.bytes_per_s for d in devices)
        return {
            "requests": {"arrived": self.n_arrived, "completed": self.n_completed, "rejected": self.n_rejected,
                         "in_flight": len(self.live)},
            "rejections": dict(sorted(self.reasons.items())),
            "latency_s": distribution(self.latency),
            "queueing_s": distribution(self.queueing),
            "ttft_s": distribution(self.ttft),  # time to first token (autoregressive requests)
            "tpot_s": distribution(self.tpot),  # time per output token after the first
            "tbt_s": distribution(self.tbt),  # time between consecutive tokens, over all gaps
            "latency_s_by_class": {k: distribution(v) for k, v in sorted(self.per_class.items())},
            "throughput_per_s": self.n_completed / span,
            "slo_attainment": self.slo_met / self.slo_total if self.slo_total else None,
            "simulated_s": end_s,
            "step_events": self.steps,  # calls of a stage replayed for one request (a denoising step, ...)
            "device_calls": self.calls,  # calls of a stage on a device, for a whole batch
            "devices": n,
            "device_busy_pct": 100 * sum(s.busy_s for s in self.series) / (n * span),
            "attained_tflops": sum(s.flops for s in self.series) / span / 1e12,
            "hbm_util_pct_mean": 100 * sum(s.bytes for s in self.series) / (span * bandwidth),
            "hbm_util_pct_peak": 100 * max(s.peak_hbm_util for s in self.series),
            "peak_memory_GB": max(d.peak_bytes for d in devices) / GB,
            "memory_capacity_GB": min(d.capacity_bytes for d in devices) / GB,
            "fallback_ops": sum(s.fallback_ops for s in self.series),
            "preemptions": sum(self.preemptions.values()),  # requests preempted (KV blocks given up), all modes
            "preemptions_by_mode": dict(sorted(self.preemptions.items())),
        }
