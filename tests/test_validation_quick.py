"""The quick validation: one small real model, timed here, against the shipped CPU profile's prediction.

The SD VAE decoder at 128x128 with PyTorch's SDPA attention (84M parameters, about
a second a call here) is one of the cases `python -m calibration validate` times
in full (calibration/validation/cpu-validation.csv); every kernel shape it runs
was measured in `calibration/profiles/cpu-fp32.json`. The independent source is
the real diffusers model timed on this machine. The bound is the one the full
validation is held to: end-to-end error within 10%, every operator category's
share within 5 points. The profile was measured on the development VM, so the
test runs only on a CPU of the same model with the same thread count.

It runs in the default suite (about 50 s). The case was chosen for the
steadiness of its error on the shared development VM: against the profile of
2026-11-26 10:37 it read +1.5%, +0.4% and +3.9% in three runs of three rounds
(single rounds -0.4% to +2.7%); against the profile measured an hour before it,
-1.3% (single rounds -1.8% to +0.2%). Against the shipped profile (12:09), in a
slow spell of the machine, +3.0%, +8.0% and +8.5% (single rounds +2.1% to
+18.2%): close to the bound, the machine's state rather than the model. The LLaMA prefill, the case first tried,
read +2.7% and +15.4% against two profiles of the same day, and 0 to -9% in one
hour against one of them (-3.6% to -9.1%).
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
    pytest.importorskip("diffusers")
    from calibration.fingerprint import fingerprint
    from emulator.cost.profile import load_profile

    recorded, here = load_profile(str(PROFILE))["fingerprint"], fingerprint("cpu")
    if (here["cpu"], here["threads"]) != (recorded["cpu"], recorded["threads"]):
        pytest.skip(f"the profile was measured on {recorded['cpu']} with {recorded['threads']} threads, "
                    f"this is {here['cpu']} with {here['threads']}")
    out = tmp_path / "quick.csv"
    # A process of its own: validation sets the allocator state of the profile for the whole process.
    subprocess.run([sys.executable, "-m", "calibration", "validate", "--device", "cpu", "--profile", str(PROFILE),
                    "--models", "sd-vae-decoder", "--attention", "flash", "--rounds", "3", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True, timeout=300)
    (row,) = list(csv.DictReader(out.open()))
    assert not row["failure"], row["failure"]
    assert int(row["fallback_ops"]) == 0  # every kernel measured: the error is the model's, not interpolation
    assert len(row["measured_rounds_s"].split()) == 3
    assert abs(float(row["error"])) <= 0.10, row
    assert float(row["max_share_diff_points"]) <= 5.0, row
