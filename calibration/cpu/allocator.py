"""The host allocator state CPU calibration and validation run under: freed memory kept for reuse.

Eager PyTorch on a CPU takes every tensor from malloc. glibc's malloc serves a
big request with fresh pages from mmap and unmaps them on free, so the OS has
to fault in and zero them again at the next touch. Whether a request of tens of
MiB gets fresh pages depends on the process's history, which no model of shapes
can follow: the same kernel or model can take twice as long in one process as
in another. So on a CPU both calibration and validation run with glibc told to
keep freed memory (`mallopt`: no mmap, no trimming below 2 GiB), the steady
state of a long-running server and what PyTorch's CPU performance guide gets
from jemalloc or TCMalloc. The profile records the state in `host.allocator`,
and `validate` times models in the state their profile was measured in.
"""

from __future__ import annotations

import ctypes
import ctypes.util

REUSE = "reuse"
DEFAULT = "default"
CHOICES = (REUSE, DEFAULT)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's malloc.h
TRIM_THRESHOLD_BYTES = 2**31 - 1  # mallopt takes an int


def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed memory for reuse; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))


def apply(state: str) -> str:
    """Put this process's allocator in `state`; REUSE if freed memory is now kept, else DEFAULT.

    DEFAULT leaves glibc's malloc as it is: it does not undo an earlier REUSE in the same process.
    """
    if state not in CHOICES:
        raise ValueError(f"allocator state {state!r}: choose from {', '.join(CHOICES)}")
    return REUSE if state == REUSE and reuse_freed_memory() else DEFAULT


def page_faults(fn) -> int:
    """Minor page faults of one call: fresh memory the allocator got from the OS and the OS zeroed.

    With freed memory kept, a model in steady state takes next to none; a validation row with many
    says the timing paid for fresh memory the profile's kernels did not.
    """
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
