"""A discrete-event emulator of multi-modal generative AI inference.

The core: shape-only operators (`ops`, `shapes`), operator graphs on networkx
(`graph`, `builder`), pipelines of stages (`pipeline`), and the scripting
entry points `simulate`, `sweep` and `search` (emulator.api). Importing it never imports
torch.
"""

from emulator.builder import GraphBuilder, Tensor
from emulator.graph import OpGraph, Totals
from emulator.ops import CATEGORIES, DTYPE_BYTES, Op
from emulator.pipeline import Pipeline, Stage

__all__ = ["CATEGORIES", "DTYPE_BYTES", "GraphBuilder", "Op", "OpGraph", "Pipeline", "Stage", "Tensor", "Totals",
           "search", "simulate", "sweep"]


def simulate(*args, **kwargs):
    """Run a scenario; see emulator.api.simulate (imported on first use: simpy and pandas load then)."""
    from emulator.api import simulate as run

    return run(*args, **kwargs)


def sweep(*args, **kwargs):
    """Run a sweep file; see emulator.api.sweep."""
    from emulator.api import sweep as run

    return run(*args, **kwargs)


def search(*args, **kwargs):
    """Find the cheapest configuration meeting an SLO; see emulator.api.search."""
    from emulator.api import search as run

    return run(*args, **kwargs)
