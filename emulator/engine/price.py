"""What a run costs: its devices' hours at a price per device-hour, and that per request, image and video-second.

Every provisioned device is billed for the whole simulated time (arrivals,
then the drain), busy or idle, as a rented GPU is: device-hours = devices x
simulated seconds / 3600, cost = device-hours x price. The price of a group's
device is the group's `price_per_hour_usd`, else the cluster's, else the
catalog's (`emulator/devices.json`, each with its public source). Outputs per
completed unit divide the whole run's cost: per request; per image (a
text-to-image request delivers `batch` images); per second of video (a
text-to-video request delivers `batch` x `frames` frames, played at the fps
its model publishes, `VIDEO_FPS`). With mixed traffic each divides the same
total, so they are not an attribution; a unit nothing delivered is None.
"""

from __future__ import annotations

SECONDS_PER_HOUR = 3600.0

# Frames per second at which each video workload's published outputs play (the model's own card or paper).
VIDEO_FPS: dict[str, float] = {
    "wan2.1-t2v-1.3b": 16,  # Wan 2.1 model card: 81 frames = 5 s at 16 fps (export_to_video(..., fps=16))
    "wan2.1-t2v-14b": 16,  # as the 1.3B
    "cogvideox-5b": 8,  # CogVideoX model card: 6-second videos of 49 frames at 8 fps
    "hunyuanvideo": 24,  # HunyuanVideo paper and repository: 129 frames = about 5 s at 24 fps
    "ltx-video": 24,  # LTX-Video model card (huggingface.co/Lightricks/LTX-Video): "24 FPS videos"
    "phenaki": 8,  # the study's Phenaki setting: 11 frames at 8 fps (workloads/phenaki.py)
}


def group_prices(scenario, devices: dict) -> dict[str, tuple[float, str]]:
    """{group name: (USD per device-hour, where the price comes from)}; `devices` maps group name -> Device."""
    out = {}
    for g in scenario.groups:
        if g.price_per_hour_usd is not None:
            out[g.name] = (g.price_per_hour_usd, f"scenario: cluster.groups[{g.name}].price_per_hour_usd")
        elif scenario.cluster.price_per_hour_usd is not None:
            out[g.name] = (scenario.cluster.price_per_hour_usd, "scenario: cluster.price_per_hour_usd")
        else:
            d = devices[g.name]
            out[g.name] = (d.price_per_hour_usd, f"catalog {d.name}: {d.price_source}")
    return out


def delivered(traffic_class) -> tuple[int, float | None]:
    """(images, video seconds) one completed request of a class delivers; video seconds None where the
    workload is not a video or its fps is not known."""
    if traffic_class.module_preset is not None:
        return 0, None
    from workloads import get

    klass = get(traffic_class.workload).klass
    params = traffic_class.pipeline().params
    batch = params.get("batch", 1)
    if klass.startswith("text-to-image"):
        return batch, None
    fps = VIDEO_FPS.get(traffic_class.workload)
    if klass.startswith("text-to-video") and fps and params.get("frames"):
        return 0, batch * params["frames"] / fps
    return 0, None


def run_cost(scenario, devices: dict, completed_by_class: dict[str, int], simulated_s: float) -> dict:
    """The `cost` section of a policy's summary.json.

    devices: group name -> its catalog Device; completed_by_class: traffic class name -> requests completed."""
    prices = group_prices(scenario, devices)
    hours = {g.name: g.devices * simulated_s / SECONDS_PER_HOUR for g in scenario.groups}
    usd = sum(hours[name] * price for name, (price, _) in prices.items())
    completed = sum(completed_by_class.values())
    images, video_s = 0, 0.0
    for t in scenario.traffic:
        n = completed_by_class.get(t.name, 0)
        per_image, per_video_s = delivered(t)
        images += n * per_image
        video_s += n * (per_video_s or 0.0)
    return {
        "device_hours": sum(hours.values()),
        "usd": usd,
        "usd_per_request": usd / completed if completed else None,
        "images": images,
        "usd_per_image": usd / images if images else None,
        "video_s": video_s,
        "usd_per_video_s": usd / video_s if video_s else None,
        "price_per_hour_usd": {name: price for name, (price, _) in prices.items()},
        "price_sources": {name: source for name, (_, source) in prices.items()},
    }
