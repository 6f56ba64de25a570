"""Scheduling policies, one small class each; POLICIES is the one dict from name to class.

A policy class has a frozen `Params` dataclass (what a scenario may set) and
serves one device: `serve(device)` is its SimPy process. Batching policies
share that loop (`base.BatchPolicy`) and differ in `next_batch` alone.
"""

from emulator.engine.policies.buckets import Buckets
from emulator.engine.policies.chunked_prefill import ChunkedPrefill
from emulator.engine.policies.fcfs import Fcfs
from emulator.engine.policies.gang import AdaptiveGang, Gang
from emulator.engine.policies.pods import Pods
from emulator.engine.policies.static_batch import StaticBatch
from emulator.engine.policies.step_batch import StepBatch

POLICIES: dict[str, type] = {
    "fcfs": Fcfs,
    "static-batch": StaticBatch,
    "step-batch": StepBatch,
    "buckets": Buckets,
    "pods": Pods,
    "chunked-prefill": ChunkedPrefill,
    "gang": Gang,
    "gang-adaptive": AdaptiveGang,
}
