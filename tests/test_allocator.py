"""The CPU allocator state: fresh pages for big tensors by default, none once freed memory is kept.

Each check runs in a child process: the state is process-wide and cannot be undone.
"""

import platform
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")

# 64 MB tensors (above glibc's largest mmap threshold, 32 MiB) are made and freed, one after another.
# By default each comes from a fresh mmap whose 16384 pages of 4 KB the OS must fault in (32 with 2 MB
# huge pages, never none). With freed memory kept, the heap grows until a freed block fits the next
# tensor with the alignment PyTorch asks for: on a quiet 2-core machine after one to three tensors,
# with two CPU-bound processes beside it after up to nine. Of the last ten of thirty, at most one may.
CHILD = textwrap.dedent("""
    import sys, torch
    from calibration.cpu.allocator import apply
    from calibration.cpu.allocator import page_faults
    state = apply(sys.argv[1])
    faults = [page_faults(lambda: torch.ones(16 * 1024 * 1024)) for _ in range(30)]
    print(state, sum(faults[-10:]))
""")


def faults_in(state: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, state], capture_output=True, text=True, check=True)
    got, faults = out.stdout.split()
    return got, int(faults)


def test_by_default_a_big_tensor_faults_in_fresh_pages():
    state, faults = faults_in("default")
    assert state == "default"
    assert 10 * 16 <= faults <= 10 * (16384 + 1000)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_kept_freed_memory_serves_the_next_big_tensor_without_faults():
    state, faults = faults_in("reuse")
    assert state == "reuse"
    assert faults < 16384 + 1000


def test_an_unknown_state_is_refused():
    from calibration.cpu.allocator import apply

    with pytest.raises(ValueError, match="choose from reuse, default"):
        apply("jemalloc")
