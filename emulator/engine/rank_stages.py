"""The Stage one rank of a gang runs, per (stage, plan, whether the gang spans nodes), made once per scenario.

`emulator.parallel.stage.rank_stage` gives one rank's stage on one node; a gang
spread over nodes runs it with its cross-node collectives flagged
(`Collective.cross_node`), so `emulator.cost.collectives` costs them on the
network path: every collective but Ulysses' all-to-alls and tensor parallel's
all-reduces (whose groups the placement keeps inside a node) and the sequence
all-gather of a plan without ring attention (its group is the Ulysses group).
The ring's send/recvs hidden under attention are counted per call as
`emulator.parallel.stage.overlap_s` counts them per request.
"""

from __future__ import annotations

from dataclasses import replace

from emulator.graph import OpGraph
from emulator.parallel.plan import ParallelPlan
from emulator.parallel.stage import overlap_s, rank_stage
from emulator.pipeline import Stage
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
    """The Stage one rank runs, per (stage, plan, spanning nodes), made once per scenario."""

    def __init__(self):
        self._memo: dict[tuple, tuple[Stage, Stage]] = {}  # the stage is kept so that its id stays unique
        self._hidden: dict[tuple[int, int], float] = {}

    def get(self, stage: Stage, plan: ParallelPlan, guidance_mode: str | None, spans: bool) -> Stage:
        key = (id(stage), plan, spans)
        found = self._memo.get(key)
        if found is None:
            rank = rank_stage(stage, plan, guidance_mode)
            if spans:
                build = rank.build
                rank = replace(rank, description=f"{rank.description}, across nodes",
                               build=lambda n: across_nodes(build(n), plan), _graphs={})
            found = self._memo[key] = (stage, rank)
        return found[1]

    def hidden_per_call_s(self, rank: Stage, model) -> float:
        """Seconds per call the ring's overlapped send/recvs hide (0 without ring attention)."""
        key = (id(rank), id(model))
        if key not in self._hidden:
            self._hidden[key] = overlap_s(rank, model) / rank.calls
        return self._hidden[key]
