"""Chrome / Perfetto trace output: a track per device and stream, a slice per call, counters.

Written as the simulation runs (one JSON event per line inside the
`traceEvents` array), so a long run never holds its trace in memory. Open it in
ui.perfetto.dev or chrome://tracing.
"""

from __future__ import annotations

import json
from pathlib import Path

US = 1e6


class TraceWriter:
    def __init__(self, path: Path):
        self.file = open(path, "w")  # noqa: SIM115 (streamed, closed in close)
        self.file.write('{"displayTimeUnit": "ms", "traceEvents": [\n')
        self.first = True

    def _event(self, event: dict) -> None:
        if not self.first:
            self.file.write(",\n")
        self.first = False
        self.file.write(json.dumps(event, separators=(",", ":")))

    def device(self, index: int, label: str) -> None:
        self._event({"name": "process_name", "ph": "M", "pid": index, "args": {"name": f"device {index} {label}"}})

    def slice(self, device: int, stream: int, start_s: float, end_s: float, name: str, args: dict) -> None:
        self._event({"name": name, "ph": "X", "pid": device, "tid": stream, "ts": round(start_s * US, 3),
                     "dur": round((end_s - start_s) * US, 3), "args": args})

    def counter(self, device: int, time_s: float, name: str, value: float) -> None:
        self._event({"name": name, "ph": "C", "pid": device, "ts": round(time_s * US, 3),
                     "args": {name: round(value, 6)}})

    def end(self) -> None:
        """Close the event array: the file is complete."""
        self.file.write("\n]}\n")

    def close(self) -> None:
        self.file.close()
