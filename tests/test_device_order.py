"""No GPU comes out faster than one with more compute and more bandwidth on a compute-bound request.

The datasheet is the independent reference: if device A has at least B's
bf16/fp16 matrix peak, fp32 vector peak and memory bandwidth, A's kernels can
run no slower than B's, so a request dominated by device time (SD v1.5's
UNet at batch 8 under CUDA graphs, where the host does not bound the time)
must not come out faster on B. Each device is costed by its shipped profile
(measured, imported from public tables, or transferred), so this checks that
profiles from different sources stay ordered as their hardware is.
"""

from itertools import permutations

import pytest

from emulator.cost import cost_model, runtime, stage_time
from emulator.devices import catalog
from workloads import build

GPUS = [d for d in catalog().values() if d.kind == "gpu"]
TOLERANCE = 0.02  # kernel times fitted by different tables and rules: 2% is noise, not an ordering


def dominates(a, b) -> bool:
    """Whether device a has at least b's matrix, vector and memory rates, and more of one."""
    rates = lambda d: (d.fp16_tflops, d.fp32_tflops, d.bytes_per_s)  # noqa: E731
    return all(x >= y for x, y in zip(rates(a), rates(b))) and rates(a) != rates(b)


@pytest.fixture(scope="module")
def unet_seconds():
    unet = next(s for s in build("stable-diffusion", batch=8).stages if s.name == "unet")
    graphs = runtime("cuda-graphs")
    return {d.name: stage_time(unet, cost_model(d.name), runtime=graphs)[0].seconds for d in GPUS}


def test_more_compute_and_bandwidth_is_never_slower(unet_seconds):
    pairs = [(a, b) for a, b in permutations(GPUS, 2) if dominates(a, b)]
    assert len(pairs) >= 10  # the catalog spans A100/L4 to B300: many dominated pairs
    slower = [(a.name, b.name, unet_seconds[a.name] / unet_seconds[b.name]) for a, b in pairs
              if unet_seconds[a.name] > unet_seconds[b.name] * (1 + TOLERANCE)]
    assert not slower, slower
