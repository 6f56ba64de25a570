"""The device catalog: hardware as data, units in the key names, loaded from devices.json.

`device(name)` returns a frozen `Device`; unknown names are user errors that
list the catalog. Peaks are datasheet upper bounds; attained rates come from
calibrated profiles: each entry names the profile shipped for it (`profile`,
a file in calibration/profiles/), or none, and is then costed by its roofline.
Each entry also states a public on-demand price per device-hour with its
source, the default that `emulator.engine.price` bills a run's devices at.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path

from emulator.errors import UserError, clip, excerpt

CATALOG = Path(__file__).with_name("devices.json")
DEFAULT_DEVICE = "a100-sxm4-80gb"  # the study ran on A100s; the shipped profile costs it


@dataclass(frozen=True)
class Device:
    name: str
    kind: str  # gpu | cpu
    label: str
    fp16_tflops: float
    bf16_tflops: float
    tf32_tflops: float
    fp32_tflops: float
    hbm_GBps: float
    hbm_GB: float
    l2_MB: float
    sms: int
    nvlink_GBps: float  # bidirectional total per GPU (half each way); 0: no NVLink
    pcie_GBps: float  # bidirectional total of the GPU's PCIe link; 0: none
    network_GBps: float  # the GPU's own NIC, one way (400 Gb/s InfiniBand = 50); 0: no datasheet fact
    gpus_per_node: int  # GPUs one NVLink (or PCIe) domain joins; larger groups cross the network
    tdp_W: float
    host_us_per_op: float  # host time per graph op of eager model code (framework overhead included)
    host_us_per_kernel: float  # bare dispatch of one more kernel
    price_per_hour_usd: float  # public on-demand list price of one device for an hour (a GPU, or the whole CPU VM)
    source: str
    host_source: str
    link_source: str  # where pcie_GBps, network_GBps and gpus_per_node come from
    price_source: str  # provider, date and instance of price_per_hour_usd, or why it is an assumption
    profile: str | None  # its shipped profile, a file in calibration/profiles/; None: costed by the roofline

    def matmul_flops_per_s(self, dtype: str) -> float:
        """Peak rate of matrix products (tensor cores where the dtype has them)."""
        tflops = {"fp16": self.fp16_tflops, "bf16": self.bf16_tflops, "fp8": 2 * self.fp16_tflops,
                  "tf32": self.tf32_tflops}.get(dtype, self.fp32_tflops)
        return tflops * 1e12

    @property
    def vector_flops_per_s(self) -> float:
        """Peak rate of non-matrix arithmetic (norms, softmax, activations run in fp32)."""
        return self.fp32_tflops * 1e12

    def peak_flops_per_s(self, op) -> float:
        """The peak an op's arithmetic runs against: matrix units for products, vector units otherwise."""
        return self.matmul_flops_per_s(op.dtype) if op.mac_flops else self.vector_flops_per_s

    @property
    def bytes_per_s(self) -> float:
        return self.hbm_GBps * 1e9

    @property
    def memory_bytes(self) -> float:
        return self.hbm_GB * 1e9

    @property
    def synchronous(self) -> bool:
        """A CPU runs its kernels on the dispatching thread: no overlap of host and device."""
        return self.kind == "cpu"


@cache
def catalog() -> dict[str, Device]:
    raw = json.loads(CATALOG.read_text())
    names = {f.name for f in fields(Device)} - {"name"}
    out = {}
    for name, entry in raw.items():
        if name.startswith("_"):
            continue
        if set(entry) != names:
            raise ValueError(f"{CATALOG}: device {name} has keys {sorted(set(entry) ^ names)} wrong")
        out[name] = Device(name=name, **entry)
    return out


def catalog_hint() -> str:
    """A short reminder of the catalog for error messages (the full list grows with every device)."""
    return f"`python -m emulator devices` lists the catalog ({clip(', '.join(catalog()), 40)})"


def device(name: str) -> Device:
    devices = catalog()
    if name not in devices:
        raise UserError(f"unknown device {excerpt(name)}; {catalog_hint()}")
    return devices[name]
