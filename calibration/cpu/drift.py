"""Correcting the drift of a shared machine's speed during a CPU calibration run.

On a shared virtual machine the speed drifts by tens of percent within seconds
(noisy neighbours, frequency changes): more than any timer's error. Two
reference kernels track it. A compute-bound one (a 384^3 fp32 matmul, ~1 ms,
timed on its second run so that its operands are in cache whatever ran before)
runs before and after every batch of samples, and the samples are rescaled to
the speed the reference had at the start of the run:

    sample * (ref_c_start / ref_c_now)^w,   ref_c_now the batch's two references' geometric mean

w is the share of compute in the kernel's roofline time on the catalog device.
A second reference, a one-row linear streaming 67 MB of weights (far larger
than the last-level cache), tracks the memory speed for the kernels that
follow it: linears, whose memory part reads a weight matrix the same way.

    sample * (ref_c_start / ref_c_now)^w * (ref_s_start / ref_s_now)^v,   v = 1 - w for a linear, else 0

Other memory-bound kernels follow neither reference well and are left alone.
Each logged entry keeps the references' median drifts and baselines, so the
profile can state every entry at the references' median speeds over the run
(`typical_speeds`, `at_speeds`). The measurements behind these choices are in
docs/notes/.
"""

from __future__ import annotations

import math
import statistics
import time

from emulator.cost.roofline import compute_share
from emulator.devices import Device, device


# Below this v a linear's batches skip the weight-stream reference: two readings (~9 ms) would cost more
# than the rescaling changes.
MIN_STREAM_SHARE = 0.05


class DriftReference:
    """The two reference kernels."""

    def __init__(self, weight_side: int = 4096):
        import torch

        self.torch = torch
        self.a, self.b = torch.rand(384, 384), torch.rand(384, 384)
        self.row = torch.rand(1, weight_side)  # [1, K] @ [K, N]^T: 67 MB of fp32 weights at 4096
        self.weight = torch.rand(weight_side, weight_side)

    def compute_once(self) -> float:
        t = time.perf_counter()
        self.a @ self.b
        return time.perf_counter() - t

    def compute_warm(self) -> float:
        """One timed run after an untimed one, so the time does not depend on what ran before.

        Run cold, right after a kernel that evicted its operands, the reference reads slow, and
        kernels with big working sets would come out fast.
        """
        self.a @ self.b
        return self.compute_once()

    def weight_stream(self, runs: int = 2) -> float:
        """The fastest of `runs` one-row linears: the weight never fits in cache, so every run streams it."""
        samples = []
        for _ in range(runs):
            t = time.perf_counter()
            self.torch.nn.functional.linear(self.row, self.weight)
            samples.append(time.perf_counter() - t)
        return min(samples)


class DriftCorrectedCpuClock:
    """perf_counter around each run, a batch of samples rescaled by the references around it.

    The kernel runs once untimed after the reference and then back to back: timed right after the
    reference, a small kernel would pay for the reference's eviction of its operands and of the
    dispatch path.
    """

    name = "perf_counter, drift-corrected"

    def __init__(self, reference: DriftReference, baseline_s: float | None = None,
                 stream_baseline_s: float | None = None, rescale: bool = True, catalog: Device | None = None):
        """baseline_s, stream_baseline_s: the speeds to rescale to (a profile's); by default the references' now.

        A profile measured before the weight-stream reference existed has no stream baseline: pass
        baseline_s alone and no sample is rescaled by that reference. With rescale False the references
        are read around every batch all the same and the samples come back as measured: a kernel timed
        in the calibration's conditions (calibration/cpu/sentinels.py). catalog: the device whose roofline
        sets each kernel's shares (the CPU entry of the catalog).
        """
        self.catalog = catalog or device("cpu")
        self.reference = reference
        if baseline_s is None:
            for _ in range(20):
                reference.compute_once()
            baseline_s = statistics.median(reference.compute_warm() for _ in range(50))
            stream_baseline_s = statistics.median(reference.weight_stream() for _ in range(10))
        self.baseline_s = baseline_s
        self.stream_baseline_s = stream_baseline_s
        self.compute_share = 1.0  # w, set per kernel
        self.stream_share = 0.0  # v, set per kernel
        self.rescale = rescale
        self.ratios: list[float] = []  # compute reference now / at start, per batch of samples
        self.stream_ratios: list[float] = []  # the same for the weight-stream reference, where it is read

    def start(self, kind: str, shape, dtype: str) -> None:
        """Before a kernel: its shares of the two references, and fresh readings."""
        self.compute_share = compute_share(kind, shape, dtype, self.catalog)
        self.stream_share = stream_share(kind, shape, dtype, self.catalog)
        self.ratios.clear()
        self.stream_ratios.clear()

    def readings(self) -> dict:
        """After a kernel: the references' median drifts and the baselines they are against, for the log."""
        out = {"compute_drift": statistics.median(self.ratios), "compute_share": self.compute_share,
               "compute_reference_s": self.baseline_s, "stream_reference_s": self.stream_baseline_s}
        if self.stream_ratios:
            out.update(stream_drift=statistics.median(self.stream_ratios), stream_share=self.stream_share)
        return out

    def samples(self, run, first: int, n: int) -> list[float]:
        streams = self.stream_baseline_s is not None and self.stream_share >= MIN_STREAM_SHARE
        stream_before = self.reference.weight_stream() if streams else 0.0
        before = self.reference.compute_warm()
        run(first - 1)  # untimed, on the previous sample's buffers: operands and code back in cache
        elapsed = []
        for i in range(first, first + n):
            t = time.perf_counter()
            run(i)
            elapsed.append(time.perf_counter() - t)
        ratio = math.sqrt(before * self.reference.compute_warm()) / self.baseline_s
        self.ratios.append(ratio)
        scale = ratio**self.compute_share
        if streams:
            stream_ratio = math.sqrt(stream_before * self.reference.weight_stream()) / self.stream_baseline_s
            self.stream_ratios.append(stream_ratio)
            scale *= stream_ratio**self.stream_share
        return [e / scale for e in elapsed] if self.rescale else elapsed



def stream_share(kind: str, shape, dtype: str, device: Device) -> float:
    """v: the part of the kernel's time the weight-stream reference applies to (a linear's memory part)."""
    return 1.0 - compute_share(kind, shape, dtype, device) if kind == "linear" else 0.0


def typical_speeds(entries: list[dict]) -> dict:
    """The references' median readings over a calibration run: the speeds its profile is stated at.

    A clock rescales to the readings at its start, which on a shared machine may be a slow or a fast
    moment; a profile used to ask what this machine would do should state its typical speed. Each
    entry records its clock's baseline and its median drift against it, so a run resumed under a new
    clock comes to one speed too.
    """
    compute = [e["compute_drift"] * e["compute_reference_s"] for e in entries if "compute_drift" in e]
    stream = [e["stream_drift"] * e["stream_reference_s"] for e in entries if "stream_drift" in e]
    speeds = {"compute_s": statistics.median(compute)} if compute else {}
    if compute and stream:
        speeds["weight_stream_s"] = statistics.median(stream)
    return speeds


def at_speeds(entry: dict, speeds: dict) -> float:
    """The factor that takes an entry's times from its clock's baselines to `speeds` (1 without a reference)."""
    if "compute_drift" not in entry or "compute_s" not in speeds:
        return 1.0
    factor = (speeds["compute_s"] / entry["compute_reference_s"]) ** entry["compute_share"]
    if "stream_drift" in entry and "weight_stream_s" in speeds:
        factor *= (speeds["weight_stream_s"] / entry["stream_reference_s"]) ** entry["stream_share"]
    return factor
