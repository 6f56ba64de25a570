"""The Stage one rank of a gang runs, per (stage, plan, whether the gang spans nodes), made once per scenario.

`emulator.parallel.stage.rank_stage` gives one rank's stage on one node; a gang
spread over nodes runs it with its cross-node collectives flagged
(`Collective.cross_node`), so `emulator.cost.collectives` costs them on the
network path: every collective but Ulysses' all-to-alls and tensor parallel's
all-reduces (whose groups the placement keeps inside a node) and the sequence
all-gather of a plan without ring attention (its group is the Ulysses group).
The send/recvs hidden under attention (ring, PipeFusion) are counted per call
of each kind as `emulator.parallel.stage.overlap_s` counts them per request,
and PipeFusion's bubble as `emulator.parallel.stage.pipeline_bubble_s`.
"""

from __future__ import annotations

from dataclasses import replace

from emulator.graph import OpGraph
from emulator.parallel.plan import ParallelPlan
from emulator.parallel.stage import overlap_call_s, pipeline_bubble_s, rank_stage
from emulator.pipeline import Stage
from emulator.schedules import CallKind
from emulator.shapes import Collective

NODE_LOCAL_COLLECTIVES = ("all_to_all", "all_reduce")  # Ulysses' and tensor parallel's: kept inside a node
SEQUENCE_GATHER = ".sequence.all_gather"  # the output gather over the sequence ranks (emulator.parallel.transforms)


def across_nodes(graph: OpGraph, plan: ParallelPlan) -> OpGraph:
    """The rank graph of a gang spanning nodes: its collectives cross them, but for the node-local ones (and
    the sequence all-gather when the sequence ranks are the Ulysses group alone, inside a node)."""
    def local(op) -> bool:
        return op.shape.op in NODE_LOCAL_COLLECTIVES or (plan.ring == 1 and op.name.endswith(SEQUENCE_GATHER))

    ops = [replace(op, shape=replace(op.shape, cross_node=True))
           if isinstance(op.shape, Collective) and not local(op) else op for op in graph.ops]
    return OpGraph(ops, graph.structure, validate=False)


class RankStages:
    """The Stage one rank runs, per (stage, plan, spanning nodes), made once per scenario, and what its calls
    cost beyond their graphs: the overlapped communication they hide and PipeFusion's bubble."""

    def __init__(self):
        self._memo: dict[tuple, tuple[Stage, Stage]] = {}  # the stage is kept so that its id stays unique
        self._hidden: dict[tuple, float] = {}
        self._bubble: dict[tuple, float] = {}

    def get(self, stage: Stage, plan: ParallelPlan, guidance_mode: str | None, spans: bool,
            steps: int | None = None) -> Stage:
        key = (id(stage), plan, spans)
        found = self._memo.get(key)
        if found is None:
            rank = rank_stage(stage, plan, guidance_mode, steps)
            if spans:
                build = rank.build
                rank = replace(rank, description=f"{rank.description}, across nodes",
                               build=lambda n: across_nodes(build(n), plan), _graphs={})
            found = self._memo[key] = (stage, rank)
        return found[1]

    def hidden_s(self, rank: Stage, kind: CallKind, model) -> float:
        """Seconds one call of `kind` hides under overlap (0 without ring attention or PipeFusion)."""
        key = (id(rank), kind, id(model))
        if key not in self._hidden:
            self._hidden[key] = overlap_call_s(rank.call_graph(kind), model)
        return self._hidden[key]

    def bubble_s(self, single: Stage, rank: Stage, plan: ParallelPlan, model, runtime, step_s: float,
                 warmup_calls: int) -> float:
        """PipeFusion's bubble per request of the stage (`emulator.parallel.stage.pipeline_bubble_s`)."""
        key = (id(rank), id(model), warmup_calls)
        if key not in self._bubble:
            self._bubble[key] = pipeline_bubble_s(single, rank, plan, model, runtime, step_s, warmup_calls)
        return self._bubble[key]
