"""Shared fixtures: the suite's pipelines are built once per session."""

import pytest

import workloads


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
