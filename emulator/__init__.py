"""A discrete-event emulator of multi-modal generative AI inference.

The core: shape-only operators (`ops`, `shapes`), operator graphs on networkx
(`graph`, `builder`), pipelines of stages (`pipeline`). Importing it never
imports torch.
"""

from emulator.builder import GraphBuilder, Tensor
from emulator.graph import OpGraph, Totals
from emulator.ops import CATEGORIES, DTYPE_BYTES, Op
from emulator.pipeline import Pipeline, Stage

__all__ = ["CATEGORIES", "DTYPE_BYTES", "GraphBuilder", "Op", "OpGraph", "Pipeline", "Stage", "Tensor", "Totals"]
