"""Shared fixtures: the suite's pipelines are built once per session."""

import pytest

import workloads


@pytest.fixture(scope="session")
def experiment_results(tmp_path_factory):
    """Every registered experiment run once on the default device into one folder, with its report:
    (folder, {name: Result}). The experiment tests share it rather than each running its own again. Two
    experiments run on fewer of their settings here to keep the suite quick: parallel-scaling on one
    (its own test runs two) and cost-slo on two GPUs (its tests hold for any set)."""
    from emulator.devices import DEFAULT_DEVICE
    from experiments import EXPERIMENTS, cost_slo, parallel_scaling
    from experiments.report import run_all

    out = tmp_path_factory.mktemp("experiments")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(parallel_scaling, "SETTINGS", (("flux1-dev", "1024", {"height": 1024, "width": 1024}),))
        mp.setattr(cost_slo, "GPUS", ("a100-sxm4-80gb", "b200"))
        return out, {r.name: r for r in run_all(EXPERIMENTS, DEFAULT_DEVICE, out)}


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray session for the tests of the Ray path (starting one costs seconds), shut down after them."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def default_pipelines():
    return {name: workloads.build(name) for name in workloads.WORKLOADS}


def pytest_collection_modifyitems(config, items):
    """Skip tests marked `gpu` unless torch sees a CUDA device (torch imported only if such tests exist)."""
    gpu_tests = [item for item in items if "gpu" in item.keywords]
    if not gpu_tests:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in gpu_tests:
            item.add_marker(skip)
