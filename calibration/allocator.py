"""The host allocator state CPU calibration and validation run under: freed memory kept for reuse.

Eager PyTorch on a CPU takes every tensor from malloc. glibc's malloc serves a
big request (from 128 KiB, a threshold that rises up to 32 MiB as big blocks
are freed) with fresh pages from mmap and unmaps them on free, so the OS has to
fault in and zero them again at the next touch. On the development VM that
costs ~1.4 us per 4 KiB page with two threads: filling 64 MiB took 28 ms fresh
against 5 ms reused. Whether a request of tens of MiB gets fresh pages depends
on the process's history (is a free block of the heap big enough?), which no
model of shapes can follow:
- a baseline attention kernel (128 heads, 1024 x 77, head dim 40; two 40 MB
  similarity matrices) took 30 ms in one calibration run and 60-73 ms in a
  fresh process, with 20k page faults a call;
- oneDNN reorders a conv's weight into a fresh buffer on every call: with a
  118 MB weight (2560 -> 1280 channels, 3x3, one 4x4 image) 94 ms with 28.8k
  faults a call, 34 ms with the memory reused;
- the SD UNet at 256x256 took 306k faults (1.25 GB) a call, 3.0-3.2 s against
  2.0-2.3 s with the memory reused.

So on a CPU both run with glibc told to keep freed memory (`mallopt`: no mmap,
no trimming below 2 GiB), the steady state of a long-running server and what
PyTorch's CPU performance guide gets from jemalloc or TCMalloc. The profile
records the state in `host.allocator`, and `validate` times models in the state
their profile was measured in.
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
