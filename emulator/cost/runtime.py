"""How the model is run: the host's dispatch schedule of one stage call, as data.

A `Runtime` is a costing input beside the cost model (`GraphCoster`,
`stage_time` and the engine's `StepCosts` take one; `eager` is the default).
It decides only when the host has issued each op (`dispatched`); kernel times
are the cost model's in every runtime, and the timeline's rule is unchanged:
op j starts at max(end of op j-1, dispatched[j]).

- `eager`: PyTorch dispatches op by op: the cost model's `host_s_per_op` per
  graph op plus `host_s_per_kernel` per further kernel the op launches, so
  small kernels wait for the host.
- `cuda-graphs`: the whole call was captured as one CUDA graph: the host pays
  one launch per call, and every kernel is issued by then, so the device runs
  them back to back: call time = launch + sum of kernel times. The launch is
  one bare dispatch, the cost model's `host_s_per_kernel`. A device without a
  separate host (`device.synchronous`, a CPU) has no graphs to launch: refused.

`RUNTIMES` is the one registry; `runtime(name)` looks one up by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from emulator.cost.model import CostModel
from emulator.errors import UserError, excerpt


@dataclass(frozen=True)
class Runtime:
    name: str
    description: str
    one_launch_per_call: bool  # the call is one graph launch: no host time between its kernels
    launch_source: str  # where the host cost comes from

    def check(self, model: CostModel) -> None:
        """Refuse, in one line, a runtime the model's device cannot run."""
        if self.one_launch_per_call and model.device.synchronous:
            raise UserError(f"runtime {self.name} needs a device with its own host; {model.device.name} runs its "
                            f"kernels on the host thread (use runtime eager)")

    def dispatched(self, model: CostModel, extra_kernels: np.ndarray) -> np.ndarray:
        """When the host has issued each op, in seconds from the call's start [ops]; `extra_kernels[j]`: the
        kernels op j launches beyond its first."""
        self.check(model)
        if self.one_launch_per_call:
            return np.full(len(extra_kernels), model.host_s_per_kernel)
        return np.cumsum(model.host_s_per_op + extra_kernels * model.host_s_per_kernel)


EAGER = Runtime("eager", "PyTorch eager: the host dispatches op by op", False,
                "the cost model's host_s_per_op per graph op, plus host_s_per_kernel per further kernel")
CUDA_GRAPHS = Runtime("cuda-graphs", "one CUDA graph launch per call, kernels back to back", True,
                      "one launch per call, costed as one bare dispatch (the cost model's host_s_per_kernel)")

RUNTIMES: dict[str, Runtime] = {r.name: r for r in (EAGER, CUDA_GRAPHS)}
DEFAULT_RUNTIME = EAGER.name


def runtime(name: str) -> Runtime:
    """The registered runtime of that name; an unknown name is a one-line UserError listing the choices."""
    if not isinstance(name, str) or name not in RUNTIMES:
        raise UserError(f"unknown runtime {excerpt(name)}; choose one of: {', '.join(RUNTIMES)}")
    return RUNTIMES[name]
