"""The quick validation: one small real model, timed here, against the shipped CPU profile's prediction.

The LLaMA-2-7B prefill of 128 tokens with 2 of its 32 layers and PyTorch's SDPA
attention is one of the cases `python -m calibration validate` times in full
(calibration/validation/cpu-validation.csv); every kernel shape it runs was
measured in `calibration/profiles/cpu-fp32.json`. The independent source is the
real transformers model timed on this machine. The bound is the one the full
validation is held to: end-to-end error within 10%, every operator category's
share within 5 points. The profile was measured on the development VM, so the
test runs only on a CPU of the same model with the same thread count.

It is not in the default run (`pytest -m validation` runs it, in about 80 s):
on the shared development VM the median of three rounds of this case came out
-3% to -9% in one hour, its rounds up to 15% apart, so a gate at 10% would fail
some clean runs for the machine's sake.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "calibration" / "profiles" / "cpu-fp32.json"


@pytest.mark.validation
def test_a_small_real_model_runs_within_the_bound_of_its_prediction(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from calibration.fingerprint import fingerprint
    from emulator.cost.profile import load_profile

    recorded, here = load_profile(str(PROFILE))["fingerprint"], fingerprint("cpu")
    if (here["cpu"], here["threads"]) != (recorded["cpu"], recorded["threads"]):
        pytest.skip(f"the profile was measured on {recorded['cpu']} with {recorded['threads']} threads, "
                    f"this is {here['cpu']} with {here['threads']}")
    out = tmp_path / "quick.csv"
    # A process of its own: validation sets the allocator state of the profile for the whole process.
    subprocess.run([sys.executable, "-m", "calibration", "validate", "--device", "cpu", "--profile", str(PROFILE),
                    "--models", "llama2-7b-prefill", "--attention", "flash", "--rounds", "3", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    (row,) = list(csv.DictReader(out.open()))
    assert not row["failure"], row["failure"]
    assert int(row["fallback_ops"]) == 0  # every kernel measured: the error is the model's, not interpolation
    assert len(row["measured_rounds_s"].split()) == 3
    assert abs(float(row["error"])) <= 0.10, row
    assert float(row["max_share_diff_points"]) <= 5.0, row
