"""Streamed metrics of one run: request rows, a binned time series, and the summary.

Nothing is kept per step. A request's row is written when it completes or is
rejected (the rest when the run ends, as in flight); latencies are kept as one
float per request for exact percentiles. Each device accumulates its current
time bin (busy time, FLOPs, bytes, peak memory, time-weighted sequence length
and running requests) and writes the bin's row once its calls have moved past
it.
"""

from __future__ import annotations

import csv
from array import array
from pathlib import Path

import numpy as np

from emulator.engine.trace import TraceWriter

GB = 1e9
REQUEST_COLUMNS = ("id", "class", "workload", "status", "arrival_s", "first_start_s", "done_s", "latency_s",
                   "queueing_s", "slo_s", "slo_met", "reason")
SERIES_COLUMNS = ("time_s", "device", "busy_pct", "tflops", "hbm_util_pct", "memory_GB", "capacity_GB",
                  "seq_len", "running", "queued")


class DeviceSeries:
    """One device's totals and its open time bin."""

    def __init__(self, device):
        self.device = device
        self.busy_s = self.flops = self.bytes = 0.0
        self.fallback_ops = 0
        self.bin = 0
        self.peak_hbm_util = 0.0
        self.reset()

    def reset(self) -> None:
        self.b_busy = self.b_flops = self.b_bytes = self.b_seq = self.b_running = 0.0
        self.b_memory = self.device.used_bytes


class Metrics:
    def __init__(self, out_dir: Path | None, resolution_s: float, trace: bool):
        self.resolution_s = resolution_s
        self.out_dir = out_dir
        self.n_arrived = self.n_completed = self.n_rejected = self.calls = self.steps = 0
        self.latency, self.queueing = array("d"), array("d")
        self.slo_total = self.slo_met = 0
        self.per_class: dict[str, array] = {}
        self.reasons: dict[str, int] = {}
        self.live: dict[int, object] = {}  # arrived, neither completed nor rejected
        self.series: list[DeviceSeries] = []
        self._requests = self._timeseries = None
        self.trace = None
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            self._requests_file = open(out_dir / "requests.csv", "w", newline="")  # noqa: SIM115 (streamed, closed in finish)
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
        self.per_class.setdefault(r.cls.name, array("d")).append(latency)
        if r.cls.slo_s is not None:
            self.slo_total += 1
            self.slo_met += latency <= r.cls.slo_s
        self._row(r, "completed", "")

    def _row(self, r, status: str, reason: str) -> None:
        if self._requests is None:
            return
        latency = r.done_s - r.arrival_s if r.done_s is not None else None
        queueing = r.first_start_s - r.arrival_s if r.first_start_s is not None else None
        slo = r.cls.slo_s
        self._requests.writerow((r.id, r.cls.name, r.cls.pipeline.workload, status, r.arrival_s, r.first_start_s,
                                 r.done_s, latency, queueing, slo,
                                 "" if slo is None or latency is None else latency <= slo, reason))

    # -- devices --------------------------------------------------------------------------------------

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
        if self._timeseries is not None:
            self._timeseries.writerow((round(t, 9), d.index, 100 * s.b_busy / res, s.b_flops / res / 1e12,
                                       100 * util, s.b_memory / GB, d.capacity_bytes / GB,
                                       s.b_seq / res, s.b_running / res, d.policy.waiting_count() + len(d.queue)))
        if s.b_memory > d.capacity_bytes:
            raise RuntimeError(f"device {d.index}: memory {s.b_memory} exceeds capacity at t={t}")
        if self.trace:
            self.trace.counter(d.index, t, "hbm_util_pct", 100 * util)
            self.trace.counter(d.index, t, "memory_GB", s.b_memory / GB)
        s.bin += 1
        s.reset()

    # -- end ------------------------------------------------------------------------------------------

    def finish(self, end_s: float) -> None:
        last = int(end_s / self.resolution_s)
        for s in self.series:
            while s.bin <= last:
                self._flush(s)
        for r in list(self.live.values()):
            self._row(r, "in_flight", "")
        if self.trace:
            self.trace.end()
        self.close()

    def close(self) -> None:
        """Close the output files (again is harmless): after `finish`, or when the run failed."""
        if self._requests is not None:
            self._requests_file.close()
            self._timeseries_file.close()
        if self.trace:
            self.trace.close()

    def summary(self, end_s: float) -> dict:
        def pct(values: array) -> dict:
            if not len(values):
                return {"p50": None, "p90": None, "p99": None, "mean": None}
            a = np.frombuffer(values, dtype=float)
            p50, p90, p99 = np.percentile(a, [50, 90, 99])
            return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean())}

        n = len(self.series)
        span = max(end_s, 1e-12)
        devices = [s.device for s in self.series]
        bandwidth = sum(d.model.device.bytes_per_s for d in devices)
        return {
            "requests": {"arrived": self.n_arrived, "completed": self.n_completed, "rejected": self.n_rejected,
                         "in_flight": len(self.live)},
            "rejections": dict(sorted(self.reasons.items())),
            "latency_s": pct(self.latency),
            "queueing_s": pct(self.queueing),
            "latency_s_by_class": {k: pct(v) for k, v in sorted(self.per_class.items())},
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
        }
