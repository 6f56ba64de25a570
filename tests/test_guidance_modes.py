"""Guidance modes: how a denoiser's calls and batch follow from the mode (counted by hand)."""

import pytest

from emulator.errors import UserError
from workloads.config import WorkloadConfig, resolve
from workloads.workload import guided_calls


@pytest.mark.parametrize("mode, expected", [("batched", (50, 4)), ("two-calls", (100, 2)),
                                            ("distilled", (50, 2)), ("off", (50, 2))])
def test_each_mode_sets_calls_and_batch(mode, expected):
    # 50 steps at batch 2: batched CFG runs 50 calls of 4, two calls per step 100 calls of 2.
    assert guided_calls(WorkloadConfig(batch=2, guidance_mode=mode), 50) == expected


def test_a_wrong_mode_and_height_width_knobs_are_checked():
    defaults = WorkloadConfig(height=480, width=832, frames=81, guidance_mode="two-calls")
    assert resolve("wan", defaults, None, width=1280, height=720).width == 1280
    with pytest.raises(UserError, match="--guidance-mode 'cfg' is not one of batched, two-calls, distilled, off"):
        resolve("wan", defaults, None, guidance_mode="cfg")
    with pytest.raises(UserError, match="--height must be a positive integer"):
        resolve("wan", defaults, None, height=0)
    with pytest.raises(UserError, match="takes no --image-size"):
        resolve("wan", defaults, None, image_size=512)
