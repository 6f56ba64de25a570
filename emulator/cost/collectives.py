"""Time of a collective (emulator.shapes.Collective) on a device: measured NCCL tables, else alpha-beta.

Measured: calibration/profiles/collectives/<device>.json holds NCCL latencies
measured on the device (aiconfigurator's nccl-tests tables, imported by
calibration/public_collectives.py), per op and GPU count, at message sizes
512 B to 512 MiB (the whole buffer, as `Collective.elements` counts it). At a
measured GPU count and a size inside the table the time is interpolated:
log(seconds) linear in log(message bytes) between the two measured sizes
around it (a measured size gives its latency exactly). Source `measured`.

Alpha-beta (source `curve`, fitted to the device's table): time = alpha_step x
steps + link_bytes / bytes_per_s, with steps and link bytes of a ring
(`steps`, `link_fraction`). Fitted per (op, measured GPU count): alpha_step =
the latency at the smallest size / steps; bytes_per_s = the link bytes between
the smallest and the largest size over their time difference. Beyond the
largest size the line continues from the measured end with that slope (so it
meets the table there); below the smallest size the time stays at the
smallest's (latency-bound). At a GPU count the table lacks, the nearest
measured count's time (in log GPUs, ties to the larger; interpolated or
extrapolated as above) times the ratio of the fitted model at this count to
the model at the measured one, so that mid-size inefficiencies the end-to-end
fit misses carry over. send_recv, which the tables lack, is scaled so from
the 2-GPU all_gather: it sends half its buffer to the peer over the same link.

Datasheet (source `datasheet`): a device with no table runs alpha-beta on its
datasheet link, NVLink where it has one, else PCIe, at half the bidirectional
rate each way, with per-step latencies taken from measured tables of the same
link (`NVLINK_STEP_S`, `PCIE_STEP_S`). A group that crosses nodes (flagged, or
more ranks than `gpus_per_node`) is bounded by the GPU's own NIC
(`network_GBps`): each rank's ring traffic (all_to_all: the part bound for
other nodes) goes through it, plus the intra-node latency of its node's ranks
and `NETWORK_STEP_S` per ring step between nodes.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from emulator.devices import Device
from emulator.errors import UserError
from emulator.ops import Op
from emulator.shapes import Collective

SCHEMA = "genai-emulator.collectives"
# Per ring step latencies of devices with no table: the 8-GPU all_gather of the smallest message (512 B)
# over its 7 steps, on H100 (NVLink 4, NVSwitch: 10.1 us) and on L40S (PCIe Gen4: 13.9 us).
NVLINK_STEP_S = 10.14e-6 / 7
PCIE_STEP_S = 13.94e-6 / 7
# Per ring step between nodes: an assumption (InfiniBand port-to-port latency is about a microsecond; NCCL's
# network proxy and the NIC's PCIe round trips add a few), not a measurement.
NETWORK_STEP_S = 5e-6
FIT_FROM = {"send_recv": "all_gather"}  # ops the tables lack -> the op whose fit they take


def link_fraction(op: str, ranks: int) -> float:
    """Bytes one rank sends over its link per byte of the message, in a ring (see `Collective`)."""
    if op == "send_recv":
        return 1.0
    return (2 if op == "all_reduce" else 1) * (ranks - 1) / ranks


def steps(op: str, ranks: int) -> int:
    """Latency-bound steps of the ring: all_reduce 2(P-1), send_recv 1, the others P-1."""
    if op == "send_recv":
        return 1
    return (2 if op == "all_reduce" else 1) * (ranks - 1)


def message_bytes(op: Op) -> int:
    """The collective's whole buffer in bytes, as the NCCL tables count it."""
    return op.shape.elements * op.dtype_bytes


@dataclass(frozen=True)
class AlphaBeta:
    alpha_step_s: float  # latency per ring step
    bytes_per_s: float  # link bytes per second of one rank

    def seconds(self, op: str, ranks: int, size_bytes: float) -> float:
        return self.alpha_step_s * steps(op, ranks) + link_fraction(op, ranks) * size_bytes / self.bytes_per_s


@dataclass(frozen=True)
class Series:
    """One op at one GPU count: measured sizes (bytes, ascending) and seconds."""

    op: str
    ranks: int
    sizes_bytes: tuple[int, ...]
    seconds: tuple[float, ...]

    def covers(self, size_bytes: float) -> bool:
        return self.sizes_bytes[0] <= size_bytes <= self.sizes_bytes[-1]

    def interpolate(self, size_bytes: float) -> float:
        """log(seconds) linear in log(size) between the measured sizes around `size_bytes` (inside the table)."""
        i = bisect.bisect_left(self.sizes_bytes, size_bytes)
        if self.sizes_bytes[i] == size_bytes:
            return self.seconds[i]
        (s0, s1), (t0, t1) = self.sizes_bytes[i - 1:i + 1], self.seconds[i - 1:i + 1]
        w = math.log(size_bytes / s0) / math.log(s1 / s0)
        return math.exp((1 - w) * math.log(t0) + w * math.log(t1))

    def fit(self) -> AlphaBeta:
        """alpha from the smallest size's latency, beta from the link bytes and time between the ends."""
        f = link_fraction(self.op, self.ranks)
        moved = f * (self.sizes_bytes[-1] - self.sizes_bytes[0])
        return AlphaBeta(self.seconds[0] / steps(self.op, self.ranks), moved / (self.seconds[-1] - self.seconds[0]))

    def extrapolate(self, size_bytes: float) -> float:
        """Outside the table: the smallest size's latency below it, the fitted slope from the largest above."""
        if size_bytes < self.sizes_bytes[0]:
            return self.seconds[0]
        extra = link_fraction(self.op, self.ranks) * (size_bytes - self.sizes_bytes[-1])
        return self.seconds[-1] + extra / self.fit().bytes_per_s


def table_path(device_name: str) -> Path:
    return Path(str(resources.files("calibration").joinpath("profiles", "collectives", f"{device_name}.json")))


@cache
def measured(device_name: str) -> dict[str, dict[int, Series]]:
    """{op: {GPUs: Series}} of the device's shipped table; empty when it has none."""
    path = table_path(device_name)
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    if data.get("schema") != SCHEMA:
        raise UserError(f"{path}: not a collectives file (expected schema {SCHEMA!r})")
    return {op: {int(g): Series(op, int(g), tuple(int(s) for s, _ in rows), tuple(float(t) for _, t in rows))
                 for g, rows in by_gpus.items()}
            for op, by_gpus in data["ops"].items()}


def nearest_series(device_name: str, op: str, ranks: int) -> Series | None:
    """The measured series of the op (send_recv: all_gather's) at the GPU count nearest `ranks` (log scale,
    ties to the larger); None without a table for it."""
    series = measured(device_name).get(FIT_FROM.get(op, op), {})
    if not series:
        return None
    return series[min(series, key=lambda g: (abs(math.log(g / ranks)), -g))]


def datasheet_link(device: Device) -> AlphaBeta:
    """NVLink where the device has it, else PCIe, at half the bidirectional datasheet rate each way."""
    if device.nvlink_GBps > 0:
        return AlphaBeta(NVLINK_STEP_S, device.nvlink_GBps / 2 * 1e9)
    if device.pcie_GBps > 0:
        return AlphaBeta(PCIE_STEP_S, device.pcie_GBps / 2 * 1e9)
    raise UserError(f"{device.name} has no GPU link (NVLink or PCIe): collectives cannot be costed on it")


def intra_node(device: Device, op: str, ranks: int, size_bytes: float) -> tuple[float, str]:
    """(seconds, source) of a collective within one node."""
    series = nearest_series(device.name, op, ranks)
    if series is None:
        return datasheet_link(device).seconds(op, ranks, size_bytes), "datasheet"
    same = (series.op, series.ranks) == (op, ranks)
    if same and series.covers(size_bytes):
        return series.interpolate(size_bytes), "measured"
    base = series.interpolate(size_bytes) if series.covers(size_bytes) else series.extrapolate(size_bytes)
    if same:
        return base, "curve"
    fit = series.fit()  # another count or op: the measured time scaled by the fitted model's ratio
    return base * fit.seconds(op, ranks, size_bytes) / fit.seconds(series.op, series.ranks, size_bytes), "curve"


def across_nodes(device: Device, op: str, ranks: int, size_bytes: float) -> float:
    """Seconds of a collective over nodes: the GPU's NIC carries its ring traffic (see the module doc)."""
    if device.network_GBps <= 0:
        raise UserError(f"{device.name} has no network fact (network_GBps): cross-node collectives cannot be "
                        "costed on it")
    nodes = max(2, -(-ranks // device.gpus_per_node))
    local = -(-ranks // nodes)
    if op == "all_to_all":
        network_bytes = (ranks - local) / ranks * size_bytes
    else:
        network_bytes = link_fraction(op, ranks) * size_bytes
    series = nearest_series(device.name, op, local) if local > 1 else None
    alpha_step = series.fit().alpha_step_s if series else datasheet_link(device).alpha_step_s
    local_s = alpha_step * steps(op, local) if local > 1 else 0.0
    return local_s + NETWORK_STEP_S * steps(op, nodes) + network_bytes / (device.network_GBps * 1e9)


def crosses_nodes(c: Collective, device: Device) -> bool:
    return c.cross_node or c.ranks > device.gpus_per_node


def collective_time(op: Op, device: Device) -> tuple[float, str]:
    """(seconds, time source) of a Collective op on a device: a TIME_SOURCES entry, `measured` only where
    interpolated in the device's table."""
    c, size = op.shape, message_bytes(op)
    if crosses_nodes(c, device):
        return across_nodes(device, c.op, c.ranks, size), "datasheet"
    return intra_node(device, c.op, c.ranks, size)


__all__ = ["AlphaBeta", "Series", "collective_time", "link_fraction", "measured", "message_bytes", "steps"]
