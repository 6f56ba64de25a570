"""Hostile input, fuzzed: every CLI verb's arguments and profile files end in a result or one clear line.

For the CLI: random argument lists from each verb's flags and a vocabulary of
hostile values (negative, huge, non-numeric, empty, paths that escape or
cannot be written, a file where a folder belongs). The command must return 0
or 2, never raise, print at most one `error:` line when it fails, and finish
within a bound. For profiles: a valid profile with one to three values
replaced by hostile ones must either load and predict finite, positive times
(a legal but absurd rate may still predict an absurd time), or be refused with
one `UserError` line. Bounded examples keep this in the
default run.
"""

import json
import math
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulator.cli import main
from emulator.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SECONDS_PER_EXAMPLE = 60
# Derandomized: the default run tries the same examples every time, so CI cannot turn red by chance;
# `pytest --hypothesis-seed=N` with derandomize off (edit here) explores further.
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
HOSTILE = ["-1", "0", "1", "3", "1e9", "10000000", "99999999999999999999", "abc", "", "nan", "inf", "-inf",
           "../../escaped", "/proc/x", "x" * 300, "é🙂", "--", "a100-sxm4-80gb", "cpu", "h200", "flash"]


@contextmanager
def time_limit(seconds: int):
    def hang(signum, frame):
        raise TimeoutError(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A scratch folder as the working directory, with a small scenario, a sweep and a plain file in it."""
    monkeypatch.chdir(tmp_path)
    scenario = (ROOT / "configs" / "pods.yaml").read_text().replace("horizon_s: 120", "horizon_s: 20")
    (tmp_path / "small.yaml").write_text(scenario)
    (tmp_path / "sweep.yaml").write_text("name: fuzz-sweep\nbase: small.yaml\naxes:\n  horizon_s: [10, 20]\n")
    (tmp_path / "afile.txt").write_text("not a folder\n")
    (tmp_path / "garbage.yaml").write_text("{{{: [\n")
    return tmp_path


def value(workdir: Path):
    files = [str(workdir / n) for n in ("small.yaml", "sweep.yaml", "afile.txt", "garbage.yaml", "absent.yaml")]
    return st.sampled_from(HOSTILE + files + [str(workdir)])


def flags(names: list[str], workdir: Path):
    if not names:
        return st.just([])
    pair = st.tuples(st.sampled_from(names), value(workdir))
    return st.lists(pair, max_size=3).map(lambda pairs: [x for p in pairs for x in p])


VERBS = {
    "describe": ["--batch", "--image-size", "--frames", "--steps", "--prompt-tokens", "--output-tokens",
                 "--dtype", "--device", "--attention", "--module", "--config", "--max-work"],
    "run": ["--out", "--seed"],
    "sweep": ["--out", "--workers", "--heatmap", "--metric"],
    "list": [],
    "devices": ["--json"],
}
POSITIONAL = {"describe": ["stable-diffusion", "llama2-7b", "parti", "nope", ""], "list": [None], "devices": [None]}


def check(argv: list[str], capsys) -> None:
    with time_limit(SECONDS_PER_EXAMPLE):
        try:
            code = main(argv)
        except SystemExit as e:  # only --help may exit on its own
            code = e.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err[-500:])
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    if code == 2:
        assert len(errors) == 1 and len(errors[0]) <= 400, (argv, err[-800:])


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_answers_hostile_arguments_with_a_result_or_one_line(verb, workdir, capsys):
    files = [str(workdir / n) for n in ("small.yaml", "sweep.yaml", "afile.txt", "garbage.yaml", "absent.yaml")]
    positional = POSITIONAL.get(verb, files + [str(workdir), ""])

    @FUZZ
    @given(first=st.sampled_from(positional), rest=flags(VERBS[verb], workdir))
    def fuzz(first, rest):
        argv = [verb] + ([first] if first is not None else []) + rest
        if verb == "sweep" and "--workers" not in rest:
            argv += ["--workers", "1"]
        check(argv, capsys)

    fuzz()


def small_profile() -> dict:
    from tests.test_predictor import profile_dict

    data = profile_dict()
    data["kinds"]["linear"]["points"] = data["kinds"]["linear"]["points"][:12]
    return data


def paths(node, prefix=()):
    """Every path to a leaf or container in a JSON document."""
    yield prefix
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in children:
        yield from paths(child, prefix + (key,))


HOSTILE_JSON = st.sampled_from([-1, 0, 1e308, 1e30, float("inf"), float("-inf"), float("nan"), "x", None, [], {},
                                True, 10**40, "Infinity", 3])


def mutate(data: dict, path: tuple, new) -> None:
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = new


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.data())
def test_hostile_profiles_load_to_finite_times_or_are_refused_in_one_line(tmp_path_factory, data):
    from emulator.cost import Profile, load_profile
    from emulator.ops import Op
    from emulator.shapes import Conv, Linear

    profile = small_profile()
    for _ in range(data.draw(st.integers(1, 3))):  # each mutation picks among the paths the document has now
        mutate(profile, data.draw(st.sampled_from([p for p in paths(profile) if p])), data.draw(HOSTILE_JSON))
    path = tmp_path_factory.mktemp("profiles") / "fuzzed.json"
    path.write_text(json.dumps(profile))
    with time_limit(SECONDS_PER_EXAMPLE):
        try:
            model = Profile(load_profile(path))
            times = [model.op_time(Op("x", shape, "fp16")) for shape in
                     (Linear(64, 1024, 1024), Linear(1, 4096, 4096), Linear(10**6, 8, 8),
                      Conv(1, 64, 64, (32, 32), (3, 3)))]
        except UserError as e:
            assert "\n" not in str(e) and len(str(e)) <= 400, str(e)[:800]
            return
    assert all(math.isfinite(t) and t > 0 for t in times), times
