"""Prices per device-hour in the catalog, and the cost section of a run's summary, checked by hand."""

import pytest

from emulator.devices import catalog
from emulator.engine.price import VIDEO_FPS, run_cost
from emulator.engine.scenario import scenario_from_data
from emulator.errors import UserError

PROVIDERS = ("CoreWeave", "Lambda", "Hyperstack", "Modal", "AWS")


def scenario(**cluster) -> dict:
    return {"name": "t", "seed": 0, "horizon_s": 20, "cluster": cluster,
            "traffic": [{"name": "sd", "workload": "stable-diffusion", "knobs": {"steps": 4},
                         "arrival": {"process": "fixed", "rate_per_s": 0.5}}],
            "policies": [{"name": "fcfs", "policy": "fcfs"}]}


def test_every_catalog_device_has_a_price_with_its_source():
    for d in catalog().values():
        assert d.price_per_hour_usd > 0, d.name
        assert any(p in d.price_source for p in PROVIDERS), d.name  # a named provider
        assert "20" in d.price_source or d.price_source.startswith("assumption"), d.name  # a date, or says so


def test_cost_per_request_is_price_times_devices_times_time_over_completed():
    from emulator import simulate

    s = simulate(scenario(devices=2, price_per_hour_usd=3.6)).summaries[0]
    # by hand: 2 devices x $3.6/h x simulated seconds / 3600 s/h = $0.002 per simulated second
    usd = 2 * 3.6 * s["simulated_s"] / 3600
    assert s["cost"]["usd"] == pytest.approx(usd, rel=1e-12)
    assert s["cost"]["device_hours"] == pytest.approx(2 * s["simulated_s"] / 3600, rel=1e-12)
    assert s["cost"]["usd_per_request"] == pytest.approx(usd / s["requests"]["completed"], rel=1e-12)
    assert s["cost"]["usd_per_image"] == pytest.approx(usd / s["requests"]["completed"], rel=1e-12)  # batch 1
    assert s["cost"]["usd_per_video_s"] is None


def test_the_catalog_price_is_the_default_and_a_group_overrides_the_cluster():
    s = scenario_from_data(scenario(price_per_hour_usd=1.0, groups=[
        {"name": "a", "devices": 1, "device": "h100-sxm", "stages": ["text_encoder", "unet"],
         "price_per_hour_usd": 5.0},
        {"name": "b", "devices": 3}]))
    devices = {"a": catalog()["h100-sxm"], "b": catalog()["a100-sxm4-80gb"]}
    cost = run_cost(s, devices, {"sd": 10}, 3600.0)
    assert cost["price_per_hour_usd"] == {"a": 5.0, "b": 1.0}
    assert cost["usd"] == pytest.approx(1 * 5.0 + 3 * 1.0)  # one hour of each device
    plain = scenario_from_data(scenario(devices=1))
    cost = run_cost(plain, {"all": catalog()["a100-sxm4-80gb"]}, {"sd": 4}, 1800.0)
    assert cost["usd"] == pytest.approx(0.5 * catalog()["a100-sxm4-80gb"].price_per_hour_usd)


def test_video_seconds_are_frames_over_the_models_fps():
    data = scenario(devices=1, price_per_hour_usd=2.0)
    data["traffic"][0].update(workload="wan2.1-t2v-1.3b", knobs={"height": 480, "width": 832, "frames": 33})
    s = scenario_from_data(data)
    cost = run_cost(s, {"all": catalog()["h100-sxm"]}, {"sd": 3}, 3600.0)
    video_s = 3 * 33 / 16  # three videos of 33 frames at Wan 2.1's 16 fps
    assert VIDEO_FPS["wan2.1-t2v-1.3b"] == 16
    assert cost["video_s"] == pytest.approx(video_s) and cost["images"] == 0
    assert cost["usd_per_video_s"] == pytest.approx(2.0 / video_s)


@pytest.mark.parametrize("where,value", [("cluster", -1), ("cluster", "cheap")])
def test_a_bad_price_is_one_line_naming_the_key(where, value):
    with pytest.raises(UserError) as e:
        scenario_from_data(scenario(devices=1, price_per_hour_usd=value))
    assert "cluster.price_per_hour_usd" in str(e.value) and "\n" not in str(e.value)
