"""Where a profile was measured: device, driver and library versions, date."""

from __future__ import annotations

import datetime
import platform
import subprocess


def fingerprint(device: str) -> dict:
    import torch

    fp = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "threads": torch.get_num_threads(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        fp.update(gpu=props.name, cuda=torch.version.cuda, sms=props.multi_processor_count,
                  memory_bytes=props.total_memory, driver=_driver())
    else:
        fp.update(cpu=_cpu_model(), machine=platform.machine())
    return fp


VERSION_KEYS = ("torch", "python", "cuda", "driver")


def provenance_fields(fp: dict) -> dict:
    """A fingerprint as a profile's provenance fields: its date, library versions and the device itself."""
    versions = {k: fp[k] for k in VERSION_KEYS if k in fp}
    device = {k: v for k, v in fp.items() if k not in VERSION_KEYS and k != "date"}
    return {"date": fp.get("date", ""), "versions": versions, "device_fingerprint": device}


def catalog_name(fp: dict) -> str:
    """The device catalog entry a fingerprint matches."""
    gpu = fp.get("gpu", "")
    for needle, name in (("H200", "h200"), ("H100", "h100-sxm"), ("A100-PCIE-40GB", "a100-pcie-40gb"),
                         ("A100", "a100-sxm4-80gb"), ("L4", "l4")):
        if needle in gpu:
            return name
    if not gpu:
        return "cpu"
    raise ValueError(f"no catalog device matches GPU {gpu!r}; pass --device-name")


def _driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
