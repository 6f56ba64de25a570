"""Correcting the drift of a shared machine's speed during a CPU calibration run.

On a shared virtual machine the speed drifts by tens of percent within seconds
(noisy neighbours, frequency changes): more than any timer's error. Two
reference kernels track it. A compute-bound one (a 384^3 fp32 matmul, ~1 ms,
timed on its second run so that its operands are in cache whatever ran before)
runs before and after every batch of samples, and the samples are rescaled to
the speed the reference had at the start of the run:

    sample * (ref_c_start / ref_c_now)^w,   ref_c_now the batch's two references' geometric mean

w is the share of compute in the kernel's roofline time on the catalog device.
On the development machine, interleaving the compute reference cut the spread
of repeated measurements of a linear kernel from 24% to 4% (coefficient of
variation), of a conv from 23% to 7%, of flash attention from 18% to 6%; with
one reference per batch of samples instead of per sample, a later check gave
3%, 4% and 1%. Over 142 repeats in 2.5 minutes the times of compute-bound
kernels followed the reference with an elasticity of 0.74-1.01 (correlation
0.90-0.94).

A second reference, a one-row linear streaming 67 MB of weights from memory
(~4 ms, far larger than the 32 MB last-level cache), tracks the machine's memory
speed for the kernels that follow it: linears, whose memory part is reading a
weight matrix the same way. Their batches are rescaled by it as well:

    sample * (ref_c_start / ref_c_now)^w * (ref_s_start / ref_s_now)^v,   v = 1 - w for a linear, else 0

Over 3 minutes on the development VM (480 rounds), a one-row linear with an
11008x4096 weight followed the reference with correlation 0.71 (elasticity 0.62)
where it followed the compute reference with 0.27; over 938 steps of a 2-layer
LLaMA decode, 0.87 (elasticity 0.79), and dividing by the reference halved the
steps' log spread, 0.126 to 0.063. Other memory-bound kernels do not follow it:
a 64 MB add 0.35, a big group norm 0.21, a 24 MB SiLU 0.24; nor a 64 MB copy,
which the calibration first rescaled every memory-bound kernel by (0.07-0.27):
that added the copy's own 11-12% noise to them, and the copy read 5-20% slower
right after a kernel than in a loop of its own. Those kernels are left alone.

These exponents are a rule, applied while measuring, and some days the kernels
follow the references much less than it says. Over 4 minutes of 2026-11-26
(872 rounds), a 128x4096x4096 linear (w 0.91) followed the compute reference
with elasticity 0.36 (correlation 0.44) and the weight-stream one with 0.62
(0.54); a 320-channel 3x3 conv on 32x32, 0.25 and 0.39; a 768^3 matmul followed
the 384^3 one better than either (0.54 and 0.44). So each entry records the
references' median drifts beside its time, and the profile restates each
pass's deviation from its kernel's mean with exponents fitted per kind from the
run's passes (calibration/elasticity.py, `fluctuation`).
"""

from __future__ import annotations

import math
import statistics
import time

from emulator.cost.kernels import attention_of_kind, work
from emulator.devices import Device
from emulator.ops import Op


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

        Run cold, right after a kernel that evicted its 1.7 MB of operands, the reference took
        1.11 ms against 0.83-0.90 ms warm on the development CPU: a sample rescaled by the cold
        time came out 20-25% fast for kernels with big working sets, not for small ones.
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

    The kernel runs once untimed after the reference and then back to back. Timed right after the
    reference, as it was first, a small kernel paid for the reference's eviction of its operands and
    of the dispatch path: on the development CPU a 320-element layer norm took 36-39 us against 8-9 us
    back to back, a 128-element add 14-17 us against 4 us, a 32768-element group norm 54-65 us
    against 22-25 us, and the penalty varied 2-3x from pass to pass.
    """

    name = "perf_counter, drift-corrected"

    def __init__(self, reference: DriftReference, baseline_s: float | None = None,
                 stream_baseline_s: float | None = None, rescale: bool = True):
        """baseline_s, stream_baseline_s: the speeds to rescale to (a profile's); by default the references' now.

        A profile measured before the weight-stream reference existed has no stream baseline: pass
        baseline_s alone and no sample is rescaled by that reference. With rescale False the references
        are read around every batch all the same and the samples come back as measured: a kernel timed
        in the calibration's conditions (calibration/sentinels.py).
        """
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



def compute_share(kind: str, shape, dtype: str, device: Device) -> float:
    """w: the compute part of the kernel's roofline time on the device."""
    op = Op("", shape, dtype)
    flops, nbytes = work(op, attention_of_kind(kind))
    compute, memory = flops / device.peak_flops_per_s(op), nbytes / device.bytes_per_s
    return compute / (compute + memory) if compute + memory > 0 else 0.0


def stream_share(kind: str, shape, dtype: str, device: Device) -> float:
    """v: the part of the kernel's time the weight-stream reference applies to (a linear's memory part)."""
    return 1.0 - compute_share(kind, shape, dtype, device) if kind == "linear" else 0.0


def typical_speeds(entries: list[dict]) -> dict:
    """The references' median readings over a calibration run: the speeds its profile is stated at.

    A clock rescales to the readings at its start (a median of 50 there), which on a shared machine may
    be a slow or a fast moment: a development-VM run of 2026-11-26 started at 1.37 ms for the compute
    reference, its batches read a median of about 0.95 ms, and stated at the start's speed its profile
    put the SD UNet at 256x256 at 2.72 s where the model ran in 1.97 s. Validation takes a model's time
    to whatever speeds the profile states, so its errors do not depend on the choice; a profile used
    to ask what this machine would do should state its typical speed. Each entry records its clock's
    baseline and its median drift against it, so a run resumed under a new clock comes to one speed too.
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


def readings(entry: dict) -> tuple[float, float]:
    """The entry's absolute (compute, weight-stream) reference readings: its median drifts times its baselines."""
    stream = entry["stream_drift"] * entry["stream_reference_s"] if "stream_drift" in entry else 1.0
    return entry["compute_drift"] * entry["compute_reference_s"], stream


def fluctuation(entry: dict, level: tuple[float, float], exponents: tuple[float, float]) -> float:
    """The factor that swaps the rule's exponents (w, v) for fitted ones on an entry's readings' deviation from
    `level` (its kernel's readings' geometric means over its passes).

    A pass's time at the profile's speeds is raw * (speed / reading)^w by the rule. The fitted exponents
    (calibration/elasticity.py) come from each kernel's passes against its own mean, so they describe
    how its time follows the references' fluctuations about that mean, not how its mean reading relates
    to the run's median (which also depends on what ran before the reference). So the level keeps the
    rule and the fluctuation takes the fit: raw * (speed / level)^w * (level / reading)^e.
    """
    compute, stream = readings(entry)
    factor = (level[0] / compute) ** (exponents[0] - entry["compute_share"])
    if "stream_drift" in entry:
        factor *= (level[1] / stream) ** (exponents[1] - entry["stream_share"])
    return factor
