"""Multi-GPU execution plans for a stage: the plan as data (`plan`), the roles ops play in it (`roles`), the
transforms from a stage's single-device graph to one rank's graph with communication (`transforms`, with
`pipefusion` and `spatial` for the patch-pipelined DiT and the row-split VAE), what one rank holds in memory
(`memory`), applied per stage by `stage` (`rank_memory`: one rank's memory for a stage)."""

from emulator.parallel.memory import graph_memory
from emulator.parallel.plan import ONE_GPU, ParallelPlan, Plan, check, parse_plan
from emulator.parallel.stage import rank_memory
from emulator.parallel.transforms import overlaps, ring, shard, tensor_parallel, ulysses

__all__ = ["ONE_GPU", "ParallelPlan", "Plan", "check", "graph_memory", "overlaps", "parse_plan", "rank_memory",
           "ring", "shard", "tensor_parallel", "ulysses"]
