"""Cost models: seconds per op on a device, and per stage call with host dispatch overhead.

Every cost model implements the `CostModel` protocol (emulator/cost/model.py):
a name, a device, an attention implementation, host dispatch times, and
`op_time(op)` and `covers(op)`. `Roofline` costs from datasheet peaks;
`Profile` from calibrated kernel times, counting the ops it costs outside its
domain as fallbacks. `stage_time` turns a model's op times into call times
under a `Runtime` (how the model is run: `RUNTIMES`, default eager).
"""

from emulator.cost.costing import cost_model, stage_time
from emulator.cost.model import CostModel
from emulator.cost.profile import Profile, load_profile
from emulator.cost.roofline import Roofline
from emulator.cost.runtime import RUNTIMES, Runtime, runtime
from emulator.cost.timeline import CallTime

__all__ = ["RUNTIMES", "CallTime", "CostModel", "Profile", "Roofline", "Runtime", "cost_model", "load_profile",
           "runtime", "stage_time"]
