"""The model suite of the characterization study, lowered into operator graphs.

`WORKLOADS` maps each name to a `Workload` (`STUDY_SUITE` names the study's own); `build(name, **knobs)` returns the
Pipeline of one request. Importing this package never imports torch.
"""

from workloads.config import WorkloadConfig
from workloads.registry import STUDY_SUITE, WORKLOADS, build, get
from workloads.workload import Workload

__all__ = ["STUDY_SUITE", "WORKLOADS", "Workload", "WorkloadConfig", "build", "get"]
