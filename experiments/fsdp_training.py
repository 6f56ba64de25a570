"""fsdp-training: compute vs communication per training step of Stable Diffusion's UNet under FSDP.

Compute: the UNet's forward at the per-GPU batch, costed on the device, and a
backward of twice the forward time (the usual 2x FLOPs of a backward pass).
Communication, fully sharded: each step all-gathers the parameters for the
forward and again for the backward, and reduce-scatters the gradients, each
moving (N-1)/N of the model's bytes per GPU over a ring: time = (N-1) x alpha +
(N-1)/N x bytes / bandwidth. Inside a node the ring runs on NVLink (half of the
device's bidirectional NVLink per direction); across nodes (8 GPUs per node) a
ring is bounded by its inter-node links: 200 Gb/s HDR InfiniBand per GPU on a
DGX A100 (devices.md). The per-hop latencies alpha are assumptions, stated in
the CSV. Overlap off: compute then communication; on: the larger of the two
plus one layer's all-gather that cannot be hidden.
"""

from __future__ import annotations

from pathlib import Path

from emulator.cost import stage_time
from experiments.common import Result, markdown_table, model, pyplot, save, write_csv
from workloads import build

NAME = "fsdp-training"
TITLE = "Stable Diffusion FSDP training: compute vs communication"
COLUMNS = ("gpus", "nodes", "batch_per_gpu", "forward_s", "compute_s", "all_gather_s", "reduce_scatter_s",
           "communication_s", "step_overlap_off_s", "step_overlap_on_s", "communication_share_off",
           "link", "link_GBps", "alpha_us")
GPUS = (2, 8, 16)
GPUS_PER_NODE = 8
BATCH_PER_GPU = 8  # images of 512x512 per GPU
INFINIBAND_GBps = 200 / 8  # 200 Gb/s HDR per GPU (DGX A100), one direction
ALPHA_NVLINK_US, ALPHA_IB_US = 5.0, 10.0  # assumed per-hop latencies
BACKWARD_OVER_FORWARD = 2.0


def ring_s(n: int, size_bytes: float, link_GBps: float, alpha_us: float) -> float:
    return (n - 1) * alpha_us * 1e-6 + (n - 1) / n * size_bytes / (link_GBps * 1e9)


def run(device: str, out: Path) -> Result:
    cost = model(device, "flash")
    unet = build("stable-diffusion", image_size=512, guidance=False).stage("unet")
    forward = stage_time(unet, cost, BATCH_PER_GPU)[0].seconds
    compute = forward * (1 + BACKWARD_OVER_FORWARD)
    graph = unet.graph(1)
    param_bytes = graph.totals.weight_bytes
    largest_layer = max(op.weight_bytes for op in graph.ops)
    rows = []
    for n in GPUS:
        nodes = -(-n // GPUS_PER_NODE)
        if nodes == 1:
            link, bw, alpha = "NVLink", cost.device.nvlink_GBps / 2, ALPHA_NVLINK_US
        else:
            link, bw, alpha = "InfiniBand HDR", INFINIBAND_GBps, ALPHA_IB_US
        gather = 2 * ring_s(n, param_bytes, bw, alpha)  # forward and backward
        scatter = ring_s(n, param_bytes, bw, alpha)
        comm = gather + scatter
        exposed = ring_s(n, largest_layer, bw, alpha)
        rows.append({"gpus": n, "nodes": nodes, "batch_per_gpu": BATCH_PER_GPU, "forward_s": forward,
                     "compute_s": compute, "all_gather_s": gather, "reduce_scatter_s": scatter,
                     "communication_s": comm, "step_overlap_off_s": compute + comm,
                     "step_overlap_on_s": max(compute, comm) + exposed,
                     "communication_share_off": comm / (compute + comm), "link": link, "link_GBps": bw,
                     "alpha_us": alpha})
    csv = write_csv(out / f"{NAME}.csv", COLUMNS, rows)

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["compute_s"] for r in rows], 0.4, label="compute (forward + backward)")
    ax.bar([i + 0.2 for i in x], [r["all_gather_s"] for r in rows], 0.4, label="all-gather (parameters)")
    ax.bar([i + 0.2 for i in x], [r["reduce_scatter_s"] for r in rows], 0.4, bottom=[r["all_gather_s"] for r in rows],
           label="reduce-scatter (gradients)")
    ax.plot(list(x), [r["step_overlap_on_s"] for r in rows], "k^", label="step, overlapped")
    ax.plot(list(x), [r["step_overlap_off_s"] for r in rows], "kv", label="step, not overlapped")
    ax.set_xticks(list(x), [f"{r['gpus']} GPUs\n{r['nodes']} node(s), {r['link']}" for r in rows])
    ax.set(ylabel="seconds per training step",
           title=f"SD v1.5 UNet FSDP on {device}, {BATCH_PER_GPU} images of 512x512 per GPU")
    ax.legend(fontsize=8)
    png = save(fig, out / f"{NAME}.png")
    multi = rows[-1]
    finding = (f"Communication is {100 * rows[0]['communication_share_off']:.0f}% of a non-overlapped step on "
               f"{rows[0]['gpus']} GPUs and {100 * multi['communication_share_off']:.0f}% on {multi['gpus']} GPUs "
               f"across {multi['nodes']} nodes, where the ring crosses InfiniBand; overlapping it with compute "
               f"brings the {multi['gpus']}-GPU step from {multi['step_overlap_off_s']:.2f} s to "
               f"{multi['step_overlap_on_s']:.2f} s.")
    table = markdown_table(("gpus", "compute_s", "communication_s", "step_overlap_off_s", "step_overlap_on_s"), rows,
                           {c: "{:.3f}" for c in ("compute_s", "communication_s", "step_overlap_off_s",
                                                  "step_overlap_on_s")})
    return Result(NAME, TITLE, finding, [csv], [png], table)
