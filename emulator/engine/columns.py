"""The summary columns `simulate` and `sweep` share: one flat name per metric of a policy's summary.json.

A policy's summary.json nests its metrics (`latency_s.p50`); tables want one
flat, unit-suffixed name per metric. This is the one list of those names, in
the order tables show them; the README's column table is checked against it.
Token columns (ttft, tpot, tbt) are empty where no request has an
autoregressive stage. `TABLE_COLUMNS` are those the printed comparison adds
when some policy has token metrics.
"""

from __future__ import annotations

# (column, path into summary.json, meaning)
METRICS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("arrived", ("requests", "arrived"), "requests that arrived within the horizon"),
    ("completed", ("requests", "completed"), "requests finished (by the horizon, or after it with drain)"),
    ("rejected", ("requests", "rejected"), "requests refused because they could not run even on an empty device"),
    ("in_flight", ("requests", "in_flight"), "requests still running when the simulation ended"),
    ("latency_p50_s", ("latency_s", "p50"), "median request latency, arrival to done"),
    ("latency_p90_s", ("latency_s", "p90"), "90th-percentile request latency"),
    ("latency_p99_s", ("latency_s", "p99"), "99th-percentile request latency"),
    ("queueing_p50_s", ("queueing_s", "p50"), "median wait from arrival to the first stage call"),
    ("queueing_p99_s", ("queueing_s", "p99"), "99th-percentile wait from arrival to the first stage call"),
    ("ttft_p50_s", ("ttft_s", "p50"), "median time to first token, arrival to the end of prefill (autoregressive requests)"),
    ("ttft_p99_s", ("ttft_s", "p99"), "99th-percentile time to first token"),
    ("tpot_p50_s", ("tpot_s", "p50"), "median time per output token after the first, per request"),
    ("tpot_p99_s", ("tpot_s", "p99"), "99th-percentile time per output token"),
    ("tbt_p50_s", ("tbt_s", "p50"), "median time between consecutive output tokens, over all gaps"),
    ("tbt_p99_s", ("tbt_s", "p99"), "99th-percentile time between consecutive output tokens"),
    ("throughput_per_s", ("throughput_per_s",), "completed requests per simulated second"),
    ("slo_attainment", ("slo_attainment",), "share of completed requests, of classes with an SLO, that met all of theirs"),
    ("device_busy_pct", ("device_busy_pct",), "mean share of time the devices ran kernels"),
    ("attained_tflops", ("attained_tflops",), "FLOPs executed per simulated second, all devices, in TFLOP/s"),
    ("hbm_util_pct_mean", ("hbm_util_pct_mean",), "bytes moved per simulated second, % of the devices' memory bandwidth"),
    ("hbm_util_pct_peak", ("hbm_util_pct_peak",), "the busiest time bin's bytes moved, % of its device's memory bandwidth"),
    ("peak_memory_GB", ("peak_memory_GB",), "peak memory held on a device (weights and live activations), GB"),
    ("fallback_ops", ("fallback_ops",), "ops costed outside the profile's calibrated domain"),
    ("step_events", ("step_events",), "stage calls replayed per request (a denoising step, a decode step), summed"),
    ("simulated_s", ("simulated_s",), "simulated time at the end of the run"),
)
COLUMNS = tuple(column for column, _, _ in METRICS)
# What a run costs (emulator/engine/price.py): the summary's `cost` section; tables put these before METRICS.
COST_METRICS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("device_hours", ("cost", "device_hours"), "devices provisioned x simulated time, in hours"),
    ("cost_usd", ("cost", "usd"), "device-hours x price per device-hour, USD"),
    ("usd_per_request", ("cost", "usd_per_request"), "cost_usd per completed request"),
    ("usd_per_image", ("cost", "usd_per_image"), "cost_usd per completed image (text-to-image requests x batch)"),
    ("usd_per_video_s", ("cost", "usd_per_video_s"), "cost_usd per second of completed video (frames / model fps)"),
)
COST_COLUMNS = tuple(column for column, _, _ in COST_METRICS)
TOKEN_TABLE = ("ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s")  # in the printed comparison, when present
# What identifies a policy's row in simulate's summary table, before the metrics.
IDENTITY = ("scenario", "policy", "kind", "device", "attention", "seed")


def metric_values(summary: dict, metrics=METRICS) -> dict:
    """A policy's summary.json as {column: value} for every metric column (of `metrics`: METRICS or COST_METRICS)."""
    row = {}
    for column, keys, _ in metrics:
        value = summary
        for key in keys:
            value = value[key]
        row[column] = value
    return row
