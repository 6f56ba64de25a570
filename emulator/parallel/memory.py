"""Memory one rank of a parallel plan holds: weights, peak activations, K/V.

Everything is read from the rank's graph, so each method's sharding follows
from its transform: tensor parallel's linears hold their share of the
weights, a PipeFusion rank only its stage's layers (patch repeats counted
once), Ulysses, ring, CFG and spatial ranks the whole model. Activations are
the rank graph's liveness peak (flash attention: no similarity matrix); K/V
is the graph's KV cache plus PipeFusion's full-length stale K/V buffers.
`graph_memory` is the one place this is computed: `emulator.parallel.stage.
rank_memory` applies it to a stage's rank, the describe report to each
planned stage, and the engine's memory accounting can call either.
"""

from __future__ import annotations

from emulator.attention import DEFAULT_ATTENTION
from emulator.graph import OpGraph
from emulator.parallel.pipefusion import is_patch_copy, stale_kv_bytes


def weight_bytes(graph: OpGraph) -> int:
    """Weights one rank running `graph` holds: once per op, PipeFusion's patch repeats not again."""
    return sum(op.weight_bytes for op in graph.ops if not is_patch_copy(op.name))


def graph_memory(graph: OpGraph, attention: str = DEFAULT_ATTENTION) -> dict:
    """Bytes one rank running `graph` holds (weights once per op, patch repeats not again)."""
    weights = weight_bytes(graph)
    activations = graph.peak_activation_bytes(attention)
    kv = graph.kv_cache_bytes + stale_kv_bytes(graph)
    return {"weight_bytes": weights, "activation_peak_bytes": activations, "kv_bytes": kv,
            "total_bytes": weights + activations + kv}

