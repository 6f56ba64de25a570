"""Reproductions of the characterization study, one module per figure or study.

`EXPERIMENTS` is the one dict from name to module; each module has `NAME`,
`TITLE` and `run(device, out) -> Result`. `python -m experiments all` runs them
in this order and writes `report.md`.
"""

from experiments import (
    breakdown,
    cost_slo,
    device_choice,
    dit_attention_share,
    dit_breakdown,
    dit_memory,
    fsdp_training,
    image_size,
    memory,
    parallel_scaling,
    prefill_decode,
    roofline,
    seqlen,
    step_caching,
    taxonomy,
    temporal,
)

EXPERIMENTS = {m.NAME: m for m in (taxonomy, roofline, breakdown, prefill_decode, seqlen, memory, image_size,
                                   temporal, fsdp_training, device_choice, cost_slo, parallel_scaling, step_caching,
                                   dit_breakdown, dit_attention_share, dit_memory)}
