"""The default runtime of a scenario: CUDA graphs for autoregressive traffic on GPUs, eager otherwise."""

from emulator.engine.scenario import scenario_from_data

LLAMA = {"name": "chat", "workload": "llama3.1-8b", "knobs": {"prompt_tokens": 64, "output_tokens": 4},
         "max_requests": 1, "arrival": {"process": "fixed", "rate_per_s": 1.0}}
SD = {"name": "img", "workload": "stable-diffusion", "knobs": {"image_size": 256, "steps": 2}, "max_requests": 1,
      "arrival": {"process": "fixed", "rate_per_s": 1.0}}


def scenario(traffic, **extra):
    return scenario_from_data({"name": "t", "device": "a100-sxm4-80gb", "traffic": traffic,
                               "policies": [{"policy": "fcfs"}], **extra})


def test_autoregressive_traffic_defaults_to_cuda_graphs_and_a_named_runtime_stays():
    assert scenario([LLAMA]).runtime == "cuda-graphs"
    assert scenario([SD, LLAMA]).runtime == "cuda-graphs"  # any class that decodes
    assert scenario([LLAMA], runtime="eager").runtime == "eager"


def test_other_traffic_and_hostless_devices_stay_eager():
    assert scenario([SD]).runtime == "eager"
    assert scenario([LLAMA], device="cpu").runtime == "eager"  # a CPU has no host of its own: no graphs
