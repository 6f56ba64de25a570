"""Metrics of a run under a gang policy: the streamed metrics plus each request's gang and per-rank lanes.

requests.csv gains a last column, `gang`: the most devices the request held at
once. A call of a gang counts once (one device call, its members' step events)
and shows in the trace on every rank's device lane, with its rank and the
gang's devices; busy time, work and memory are each rank's own
(`Metrics.work` per rank). Device lanes are labelled with their node.
"""

from __future__ import annotations

import csv

from emulator.engine.metrics import REQUEST_COLUMNS, Metrics


class GangRows:
    """A csv writer for request rows that appends the request's gang size (set just before each row)."""

    def __init__(self, writer):
        self.writer, self.gang = writer, 1

    def writerow(self, row) -> None:
        self.writer.writerow((*row, self.gang))


class GangMetrics(Metrics):
    def __init__(self, out_dir, resolution_s: float, trace: bool):
        super().__init__(out_dir, resolution_s, trace)
        if self._requests is not None:  # the header again, with the gang column
            self._requests_file.seek(0)
            self._requests_file.truncate()
            writer = csv.writer(self._requests_file)
            writer.writerow((*REQUEST_COLUMNS, "gang"))
            self._requests = GangRows(writer)

    def attach(self, devices) -> None:
        trace, self.trace = self.trace, None
        super().attach(devices)
        self.trace = trace
        if trace:
            for d in devices:
                trace.device(d.index, f"{d.model.device.name} node {d.group}.{d.node}")

    def _row(self, r, status: str, reason: str) -> None:
        if self._requests is not None:
            self._requests.gang = r.gang
        super()._row(r, status, reason)

    def gang_call(self, ranks: list, start_s: float, end_s: float, stage: str, members: list, fallback_ops: int,
                  calls: int = 1) -> None:
        """`calls` back-to-back calls of a stage on every device of `ranks` ended: counted once."""
        self.calls += calls
        self.steps += calls * len(members)
        self.series[ranks[0].index].fallback_ops += fallback_ops
        if self.trace:
            gang = [d.index for d in ranks]
            for k, d in enumerate(ranks):
                self.trace.slice(d.index, 0, start_s, end_s, stage,
                                 {"requests": [m.id for m in members], "calls": calls, "rank": k, "gang": gang})
