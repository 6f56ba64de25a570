"""The command line: list, describe, and one-line errors with exit code 2."""

import json
import subprocess
import sys

import pytest

from emulator.cli import main
from tests.test_suite import STUDY
from workloads import WORKLOADS


def run(*args):
    return subprocess.run([sys.executable, "-m", "emulator", *args], capture_output=True, text=True, timeout=60)


def test_list_prints_every_workload(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(WORKLOADS)
    assert [line.split()[0] for line in out][:len(STUDY)] == STUDY  # the study's suite first


def test_describe_json_has_the_documented_keys(capsys):
    assert main(["describe", "stable-diffusion", "--json", "--batch", "2"]) == 0
    r = json.loads(capsys.readouterr().out)
    for key in ("workload", "params", "components", "flops_per_request", "params_total", "peak_activation_bytes"):
        assert key in r
    assert r["params"]["batch"] == 2
    unet = next(c for c in r["components"] if c["name"] == "unet")
    for key in ("name", "calls", "batch", "params", "flops_per_call", "bytes_per_call", "ops_by_category", "attention"):
        assert key in unet
    assert unet["batch"] == 4 and unet["calls"] == 50
    assert {"variant", "q_len", "kv_len", "heads", "head_dim", "count"} <= set(unet["attention"][0])
    assert r["flops_per_request"] == sum(c["flops_per_request"] for c in r["components"])
    assert unet["similarity_bytes_formula_per_call"] == unet["similarity_bytes_per_call"]


def test_describe_text_names_every_component(capsys):
    assert main(["describe", "parti"]) == 0
    out = capsys.readouterr().out
    for name in ("encoder", "decoder", "vqgan_decoder", "attention calls", "KV cache"):
        assert name in out


@pytest.mark.parametrize("args, fragment", [
    (["describe", "dall-e"], "stable-diffusion"),  # names the valid choices
    (["describe", "stable-diffusion", "--image-size", "500"], "--image-size"),
    (["describe", "make-a-video", "--frames", "0"], "--frames"),
    (["describe", "llama2-7b", "--batch", "-3"], "--batch"),
    (["describe", "llama2-7b", "--batch", "many"], "invalid int"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, fragment):
    result = run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_core_packages_never_import_torch():
    code = "import sys, emulator, workloads, emulator.cli, emulator.describe; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


SMALL = """name: small
horizon_s: 2
traffic:
  - {name: c, workload: stable-diffusion, knobs: {image_size: 256, steps: 2}, max_requests: 2,
     arrival: {process: fixed, rate_per_s: 4}}
policies:
  - {policy: fcfs}
  - {policy: step-batch}
"""


@pytest.fixture
def small(tmp_path, monkeypatch):
    """A scratch working directory holding a small scenario (small.yaml) and a plain file (afile.txt)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL)
    (tmp_path / "afile.txt").write_text("not a folder\n")
    return tmp_path


def in_dir(where, *args):
    return subprocess.run([sys.executable, "-m", "emulator", *args], capture_output=True, text=True, timeout=60,
                          cwd=where)


@pytest.mark.parametrize("flags, fragment", [
    (["--out", "afile.txt"], "cannot write results to afile.txt: it is a file, not a folder"),
    (["--out", "/proc/x"], "cannot create the results folder /proc/x"),
    (["--seed", "-1"], "error: --seed: must be >= 0, got -1"),
    (["--seed", "4294967296"], "error: --seed: must be <= 4294967295, got 4294967296"),
    (["--seed", "9" * 100], "got '" + "9" * 56 + "..."),  # quoted short
])
def test_case1_run_refuses_an_unusable_folder_or_seed_in_one_line(small, flags, fragment):
    result = in_dir(small, "run", "small.yaml", *flags)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [result.stderr.strip()] and fragment in result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert sorted(p.name for p in small.iterdir()) == ["afile.txt", "small.yaml"]  # nothing written


def test_case4_describe_says_where_its_kernel_times_come_from(capsys):
    assert main(["describe", "stable-diffusion", "--steps", "2", "--device", "l4", "--roofline"]) == 0
    out = capsys.readouterr().out
    assert "kernel times from: datasheet roofline, uncalibrated (requested)" in out
    assert main(["describe", "stable-diffusion", "--steps", "2", "--device", "h100-sxm", "--json"]) == 0
    source = json.loads(capsys.readouterr().out)["cost_source"]
    assert source["source"] == "measured" and source["date"] and source["device_fingerprint"]["sms"] == 132


def test_case4_devices_lists_the_catalog_with_each_source(capsys):
    from emulator.devices import catalog

    assert main(["devices"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [line for line in out if not line.startswith(" ")]  # one per device; its kinds indented below
    assert [line.split()[0] for line in lines] == list(catalog())
    by_name = {line.split()[0]: line for line in lines}
    h200 = out[out.index(by_name["h200"]) + 1:out.index(by_name["l4"])]
    assert any(line.split()[:2] == ["measured:", "attention_fa3,"] for line in h200)  # the public tables
    assert any(line.split()[0] == "scaled:" and "conv2d," in line for line in h200)  # the H100's, scaled
    assert any(line.split()[:2] == ["default", "attention:"] for line in h200)
    assert "measured profile calibration/profiles/cpu-fp32.json (" in by_name["cpu"]
    assert "derived profile calibration/profiles/a100-sxm4-80gb.json" in by_name["a100-sxm4-80gb"]
    assert "derived profile calibration/profiles/l4.json (python -m calibration transfer" in by_name["l4"]
    assert "measured profile calibration/profiles/h200.json" in by_name["h200"]  # aiconfigurator's tables
    assert main(["devices", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["l4"]["cost_source"]["source"] == "derived"
    assert rows["cpu"]["cost_source"]["kinds"]["conv2d"] == "measured"
    assert rows["l4"]["cost_source"]["kinds"]["conv2d"] == "scaled"


def test_case5_describe_refuses_work_past_the_limit_before_costing(capsys, monkeypatch):
    import emulator.describe

    def never(*args, **kwargs):
        raise AssertionError("costed a request that was over the limit")

    monkeypatch.setattr(emulator.describe, "stage_time", never)
    assert main(["describe", "make-a-video", "--steps", "10000", "--max-work", "1e6"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == ("error: describing this request would cost 3.38e+07 op calls (decoder: 939 ops x 10000 calls), "
                    "over the limit of 1e+06; raise it with --max-work N")


@pytest.mark.parametrize("knob", [["llama2-7b", "--output-tokens", "10000000"], ["stable-diffusion", "--steps", "100000000"]])
def test_case5_describe_answers_huge_knobs_at_once(knob):
    import time

    started = time.perf_counter()
    result = run("describe", *knob)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert time.perf_counter() - started < 10  # before: over a minute, and 41 s


def test_case5_max_work_raises_the_limit(capsys):
    assert main(["describe", "stable-diffusion", "--steps", "3", "--max-work", "1000"]) == 2
    assert "over the limit of 1e+03" in capsys.readouterr().err
    assert main(["describe", "stable-diffusion", "--steps", "3", "--max-work", "1e4"]) == 0
    assert main(["describe", "stable-diffusion", "--max-work", "-5"]) == 2
    assert "--max-work: must be a positive number, got '-5'" in capsys.readouterr().err
