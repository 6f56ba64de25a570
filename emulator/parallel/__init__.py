"""Multi-GPU execution plans for a stage: the plan as data (`plan`), the roles ops play in it (`roles`), and
the transforms from a stage's single-device graph to one rank's graph with communication (`transforms`),
applied per stage by `stage`."""

from emulator.parallel.plan import ONE_GPU, ParallelPlan, Plan, check, parse_plan
from emulator.parallel.transforms import overlaps, ring, shard, tensor_parallel, ulysses

__all__ = ["ONE_GPU", "ParallelPlan", "Plan", "check", "overlaps", "parse_plan", "ring", "shard",
           "tensor_parallel", "ulysses"]
