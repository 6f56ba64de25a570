"""Cost models: seconds per op on a device, and per stage call with host dispatch overhead.

A cost model has `device`, `attention` ('flash' or 'baseline'),
`host_s_per_op` (host time per graph op), `host_s_per_kernel` (per further
kernel of an op) and one method, `op_time(op) -> seconds`; a calibrated
`Profile` also answers `covers(op)` (inside its measured domain) so fallbacks
can be counted.
"""

from emulator.cost.costing import cost_model, stage_time
from emulator.cost.profile import Profile, load_profile
from emulator.cost.roofline import Roofline
from emulator.cost.timeline import CallTime

__all__ = ["CallTime", "Profile", "Roofline", "cost_model", "load_profile", "stage_time"]
