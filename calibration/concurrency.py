"""`python -m calibration concurrency`: two kernels on two CUDA streams at once, against each alone.

Pairs of opposite character (a large GEMM or convolution with a large memory-
bound kernel) and of the same character. For each pair: each kernel's time
alone, and the time of both launched together on two streams (from before the
first launch to after both end). Writes one CSV row per pair with the kernels'
FLOPs and bytes, so a concurrency model can be checked against it.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from calibration.kernels import make_runner
from emulator.ops import Op
from emulator.shapes import Conv, Elementwise, Linear, Norm

KERNELS = {
    "gemm": ("linear", Linear(8192, 8192, 8192, bias=False)),
    "conv": ("conv2d", Conv(8, 640, 640, (64, 64), (3, 3))),
    "add": ("elementwise", Elementwise("add", 1 << 28, 2)),
    "group_norm": ("group_norm", Norm("group", 8 * 640 * 128 * 128, 640, 32, batch=8)),
}
PAIRS = [("gemm", "add"), ("gemm", "group_norm"), ("conv", "add"), ("conv", "group_norm"),
         ("gemm", "gemm"), ("add", "add")]


def _time(fns_streams, torch, repeats: int = 10) -> float:
    samples = []
    for _ in range(repeats + 2):
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        main = torch.cuda.current_stream()
        start.record(main)
        for fn, stream in fns_streams:
            stream.wait_stream(main)
            with torch.cuda.stream(stream):
                fn()
        for _, stream in fns_streams:
            main.wait_stream(stream)
        end.record(main)
        torch.cuda.synchronize()
        samples.append(start.elapsed_time(end) * 1e-3)
    return statistics.median(samples[2:])


def concurrency(out: Path) -> list[dict]:
    import torch

    s1, s2 = torch.cuda.Stream(), torch.cuda.Stream()
    runners = {name: make_runner(kind, shape, "fp16", "cuda", 1) for name, (kind, shape) in KERNELS.items()}
    rows = []
    for a, b in PAIRS:
        ra, rb = runners[a], runners[b]
        alone_a = _time([(lambda: ra.run(0), s1)], torch)
        alone_b = _time([(lambda: rb.run(0), s2)], torch)
        joint = _time([(lambda: ra.run(0), s1), (lambda: rb.run(0), s2)], torch)
        oa, ob = Op(a, KERNELS[a][1], "fp16"), Op(b, KERNELS[b][1], "fp16")
        rows.append({"a": a, "b": b, "alone_a_ms": alone_a * 1e3, "alone_b_ms": alone_b * 1e3,
                     "joint_ms": joint * 1e3, "serial_ms": (alone_a + alone_b) * 1e3,
                     "a_flops": oa.flops, "a_bytes": oa.bytes, "b_flops": ob.flops, "b_bytes": ob.bytes})
        print(rows[-1], flush=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows
