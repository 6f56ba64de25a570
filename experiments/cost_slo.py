"""cost-slo: what a generated video costs as the p99 latency target tightens, and on which GPU.

Wan 2.1 1.3B text-to-video (480x832, 33 frames = about 2 s at its 16 fps,
20 steps, CUDA graphs) arrives as Poisson traffic at 0.4 requests/s for 120 s
on N GPUs of one type, one request at a time per GPU (fcfs). For each GPU the
device count grows from one until p99 latency falls within the tightest
target (or the counts run out); every point is one simulation, billed as
`emulator.engine.price` bills a run (every device for the simulated time at
the catalog's price per GPU-hour). For each p99 target, the cheapest point
whose requests all completed within it gives the cost per video and per
second of video. A looser target can only admit more points, so the cheapest
cost per video never rises as the target loosens.
"""

from __future__ import annotations

from pathlib import Path

from emulator.api import simulate
from emulator.devices import catalog
from experiments.common import Result, markdown_table, pyplot, save, write_csv

NAME = "cost-slo"
TITLE = "Cost per generated video against the p99 latency target, by GPU and count"
GPUS = ("l40s", "a100-sxm4-80gb", "h100-sxm", "h200", "b200")
COUNTS = (1, 2, 3, 4, 6, 8)
TARGETS_S = (15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0)  # p99 latency targets
KNOBS = {"height": 480, "width": 832, "frames": 33, "steps": 20}
FPS = 16  # Wan 2.1's published output frame rate (emulator.engine.price.VIDEO_FPS)
RATE_PER_S = 0.4
COLUMNS = ("device", "devices", "latency_p99_s", "completed", "rejected", "simulated_s", "device_hours",
           "cost_usd", "usd_per_video", "usd_per_video_s")
BEST_COLUMNS = ("slo_p99_s", "device", "devices", "latency_p99_s", "usd_per_video", "usd_per_video_s")


def scenario(device: str, devices: int) -> dict:
    return {"name": f"{NAME}-{device}-{devices}", "seed": 0, "device": device, "runtime": "cuda-graphs",
            "horizon_s": 120, "cluster": {"devices": devices},
            "traffic": [{"name": "wan", "workload": "wan2.1-t2v-1.3b", "knobs": KNOBS,
                         "arrival": {"process": "poisson", "rate_per_s": RATE_PER_S}}],
            "policies": [{"name": "fcfs", "policy": "fcfs"}]}


def point(device: str, devices: int) -> dict:
    s = simulate(scenario(device, devices)).summaries[0]
    cost = s["cost"]
    return {"device": device, "devices": devices, "latency_p99_s": s["latency_s"]["p99"],
            "completed": s["requests"]["completed"], "rejected": s["requests"]["rejected"],
            "simulated_s": s["simulated_s"], "device_hours": cost["device_hours"], "cost_usd": cost["usd"],
            "usd_per_video": cost["usd_per_request"], "usd_per_video_s": cost["usd_per_video_s"]}


def points(gpus: tuple[str, ...]) -> list[dict]:
    """Per GPU, counts upward until the tightest target is met (each count one simulation)."""
    rows = []
    for device in gpus:
        for n in COUNTS:
            rows.append(point(device, n))
            if rows[-1]["latency_p99_s"] is not None and rows[-1]["latency_p99_s"] <= min(TARGETS_S):
                break
    return rows


def cheapest(rows: list[dict]) -> list[dict]:
    """For each target, the cheapest point (per video) that completed every request within it, if any."""
    best = []
    for target in TARGETS_S:
        ok = [r for r in rows if not r["rejected"] and r["latency_p99_s"] is not None
              and r["latency_p99_s"] <= target]
        if ok:
            r = min(ok, key=lambda r: r["usd_per_video"])
            best.append({"slo_p99_s": target, **{k: r[k] for k in BEST_COLUMNS[1:]}})
    return best


def plot(rows: list[dict], best: list[dict], out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for device in dict.fromkeys(r["device"] for r in rows):
        mine = [r for r in rows if r["device"] == device and r["latency_p99_s"] is not None]
        ax.plot([r["latency_p99_s"] for r in mine], [r["usd_per_video"] for r in mine], "o-", ms=4, label=device)
        for r in mine:
            ax.annotate(str(r["devices"]), (r["latency_p99_s"], r["usd_per_video"]), fontsize=6,
                        xytext=(3, 3), textcoords="offset points")
    ax.step([b["slo_p99_s"] for b in best], [b["usd_per_video"] for b in best], where="post", c="k", lw=1.2,
            label="cheapest meeting the target")
    ax.set(xscale="log", yscale="log", xlabel="p99 latency (s); for the step line, the p99 target",
           ylabel="USD per video", title=f"Wan 2.1 1.3B, 480x832x{KNOBS['frames']}, {RATE_PER_S} videos/s "
                                           "(numbers: GPU count)")
    ax.legend(fontsize=7)
    return save(fig, out / f"{NAME}.png")


def finding(best: list[dict]) -> str:
    if not best:
        return f"No GPU count up to {max(COUNTS)} met even a {max(TARGETS_S):g} s p99 target."
    tight, loose = best[0], best[-1]
    return (f"The cheapest video meeting a {tight['slo_p99_s']:g} s p99 target costs ${tight['usd_per_video']:.4f} "
            f"({tight['devices']} x {tight['device']}, ${tight['usd_per_video_s']:.4f} per video-second), against "
            f"${loose['usd_per_video']:.4f} at {loose['slo_p99_s']:g} s ({loose['devices']} x {loose['device']}): "
            f"tightening the target from {loose['slo_p99_s']:g} s to {tight['slo_p99_s']:g} s costs "
            f"{tight['usd_per_video'] / loose['usd_per_video']:.2f}x per video.")


def run(device: str, out: Path) -> Result:
    gpus = GPUS if device in GPUS or catalog().get(device) is None or catalog()[device].kind != "gpu" \
        else (*GPUS, device)  # the asked device joins the comparison when it is another catalog GPU
    rows = points(gpus)
    best = cheapest(rows)
    csvs = [write_csv(out / f"{NAME}.csv", COLUMNS, rows), write_csv(out / f"{NAME}-cheapest.csv", BEST_COLUMNS, best)]
    formats = {"usd_per_video": "{:.4f}", "usd_per_video_s": "{:.4f}", "latency_p99_s": "{:.1f}"}
    return Result(NAME, TITLE, finding(best), csvs, [plot(rows, best, out)],
                  markdown_table(BEST_COLUMNS, best, formats))
