"""The measuring setup of each device type: the one place that knows a CPU from a GPU (calibration/setup.py)."""

from __future__ import annotations

from calibration.cpu.setup import FEATURES as CPU_FEATURES
from emulator.cost.predictor import DEFAULT_FEATURES

DEVICES = ("cpu", "cuda")


def setup_for(device: str):
    """The Setup of a torch device type ("cpu" or "cuda"); building a CUDA one checks that torch sees a GPU."""
    if device == "cpu":
        from calibration.cpu.setup import CpuSetup

        return CpuSetup()
    if device == "cuda":
        from calibration.gpu import CudaSetup

        return CudaSetup()
    raise ValueError(f"device {device!r}: choose from {', '.join(DEVICES)}")


def features_for(kind: str, catalog_kind: str) -> str:
    """The feature set a kind is fitted in on a catalog device of this kind ("cpu" or "gpu")."""
    features = CPU_FEATURES if catalog_kind == "cpu" else {}
    return features.get(kind, DEFAULT_FEATURES[kind])
