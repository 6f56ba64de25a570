"""The input boundary: every value a user supplies is bounded before work starts, refused in one short line.

Each test names the case it covers: 1 YAML aliases and quoted values, 2 work
bounds, 3 context lengths, 4 result paths, 5 profile times, 6 the seed.
"""

import copy
import time

import pytest

from emulator.engine.scenario import load_scenario, scenario_from_data
from emulator.errors import EXCERPT_CHARS, UserError, excerpt

BASE = {
    "name": "t",
    "horizon_s": 10,
    "traffic": [{"name": "sd", "workload": "stable-diffusion", "knobs": {"image_size": 512},
                 "arrival": {"process": "poisson", "rate_per_s": 1.0}}],
    "policies": [{"policy": "fcfs"}],
}
SHORT = 200  # characters: a one-line message quoting an excerpt, the key path and the problem


def refusal(load) -> str:
    """The one-line message of a refused input, checked short and single-line."""
    with pytest.raises(UserError) as e:
        load()
    message = str(e.value)
    assert "\n" not in message and len(message.split(": ", 1)[-1]) < SHORT, message[:500]
    return message


def write(tmp_path, text: str):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


def bomb(levels: int, width: int = 10) -> str:
    """A flow list whose first items define anchors, each level `width` aliases of the one before."""
    anchors = ["&a0 [" + ", ".join(["lol"] * width) + "]"]
    anchors += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "[" + ", ".join(anchors) + "]"


SCENARIO_TAIL = "policies: [{policy: fcfs}]\ntraffic: [{name: sd, workload: stable-diffusion, " \
                "arrival: {process: poisson, rate_per_s: 1}, knobs: {image_size: %s}}]\n"


# -- case 1: YAML aliases and quoted values --------------------------------------------------------------------


@pytest.mark.parametrize("where", ["name", "image_size"])
def test_case1_an_alias_bomb_is_refused_before_it_is_built(tmp_path, where):
    name, size = (bomb(5), 512) if where == "name" else ("t", bomb(5))
    path = write(tmp_path, f"name: {name}\n" + SCENARIO_TAIL % size)
    start = time.perf_counter()
    message = refusal(lambda: load_scenario(path))
    assert time.perf_counter() - start < 2
    assert message == f"{path}: refused: its aliases expand to more than 100000 values"


def test_case1_too_many_aliases_recursion_and_depth_are_refused(tmp_path):
    many = "[&a x, " + ", ".join(["*a"] * 101) + "]"
    path = write(tmp_path, f"name: {many}\n" + SCENARIO_TAIL % 512)
    assert refusal(lambda: load_scenario(path)).endswith("refused: more than 100 aliases (*name)")
    path = write(tmp_path, "name: &a [*a]\n" + SCENARIO_TAIL % 512)
    assert refusal(lambda: load_scenario(path)).endswith("(a recursive alias)")
    path = write(tmp_path, "name: " + "[" * 5000 + "]" * 5000 + "\n" + SCENARIO_TAIL % 512)
    assert refusal(lambda: load_scenario(path)).endswith("refused: nested more than 100 levels deep")


def test_case1_python_tags_are_refused_without_running_anything(tmp_path):
    witness = tmp_path / "ran"
    path = write(tmp_path, f"name: !!python/object/apply:os.system ['touch {witness}']\n" + SCENARIO_TAIL % 512)
    with pytest.raises(UserError, match="not valid YAML .*could not determine a constructor"):
        load_scenario(path)
    assert not witness.exists()


def test_case1_a_few_aliases_still_load(tmp_path):
    path = write(tmp_path, "name: t\npolicies: [{policy: fcfs}]\ntraffic:\n"
                 "  - {name: a, workload: stable-diffusion, arrival: &arr {process: poisson, rate_per_s: 1}}\n"
                 "  - {name: b, workload: stable-diffusion, arrival: *arr}\n")
    s = load_scenario(path)
    assert s.traffic[0].arrival == s.traffic[1].arrival


HUGE = ["x" * 10_000, list(range(10_000)), {f"k{i}": i for i in range(5000)}, 10**4000]


@pytest.mark.parametrize("path", [("name",), ("horizon_s",), ("traffic", 0, "knobs", "image_size"),
                                  ("traffic", 0, "workload"), ("policies", 0, "policy"), ("device",),
                                  ("traffic", 0, "arrival", "rate_per_s"), ("traffic", 0, "knobs", "dtype")])
@pytest.mark.parametrize("value", HUGE, ids=["str", "list", "dict", "int"])
def test_case1_messages_quote_a_short_excerpt_of_a_huge_value(path, value):
    data = copy.deepcopy(BASE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    message = refusal(lambda: scenario_from_data(data, where="s.yaml"))
    assert message.startswith("s.yaml: ")


def test_case1_a_huge_key_is_clipped_in_the_path():
    data = {**copy.deepcopy(BASE), "k" * 10_000: 1}
    assert "unknown key" in refusal(lambda: scenario_from_data(data))


def test_case1_an_integer_too_long_to_print_is_refused_in_one_line(tmp_path):
    path = write(tmp_path, "name: " + "9" * 5000 + "\n" + SCENARIO_TAIL % 512)
    assert "not valid YAML" in refusal(lambda: load_scenario(path))


def test_case1_excerpt_is_short_and_marks_the_cut():
    assert excerpt("long") == "'long'" and excerpt(-1) == "-1" and excerpt(1.5) == "1.5"
    shared = ["lol"] * 10
    for _ in range(30):  # 10**30 leaves, shared: excerpt must not expand it
        shared = [shared] * 10
    for value in (shared, "x" * 10**6, 10**5000):
        text = excerpt(value)
        assert len(text) <= EXCERPT_CHARS and text.endswith(("...", ">")), text


# -- case 2: unbounded work ------------------------------------------------------------------------------------


def with_traffic(**changes):
    data = copy.deepcopy(BASE)
    for key, value in changes.items():
        path, target = key.split("."), data
        if path[0] == "t":  # the traffic class
            path, target = path[1:], data["traffic"][0]
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
    return data


def test_case2_a_billion_requests_are_refused_naming_the_estimate_and_the_key():
    data = with_traffic(**{"t.arrival.rate_per_s": 1e8})
    message = refusal(lambda: scenario_from_data(data, where="s.yaml"))
    assert message == ("s.yaml: estimated 5.2e+10 engine events per policy (traffic[0]: 1e+09 requests x 52 stage "
                       "calls) exceed limits.max_events = 100000000; set limits: {max_events: N} to allow more")


@pytest.mark.parametrize("changes", [
    {"t.max_requests": 10**12, "t.arrival.rate_per_s": 1e9, "horizon_s": 1e6},
    {"t.arrival": {"process": "closed", "users": 10**9}},
    {"t.arrival": {"process": "closed", "users": 8, "think_s": 0.0}, "horizon_s": 1e9},
    {"t.arrival": {"process": "fixed", "rate_per_s": 1e-3}, "horizon_s": 1e12},
    {"output": {"timeseries_resolution_s": 1e-6}, "horizon_s": 1e3},
    {"cluster": {"devices": 10**9}},
])
def test_case2_every_way_to_unbounded_work_is_refused_up_front(changes):
    message = refusal(lambda: scenario_from_data(with_traffic(**changes)))
    assert "exceed limits.max_events" in message


@pytest.mark.parametrize("changes, message", [
    ({"horizon_s": 1e308, "output": {"timeseries_resolution_s": 1e-300}}, "estimated inf engine events"),
    ({"t.arrival.rate_per_s": 1e308, "horizon_s": 1e308}, "estimated inf engine events"),
    ({"cluster": {"devices": 2**63}}, "cluster.devices: must be an integer of at most 19 digits"),
    ({"t.arrival": {"process": "closed", "users": 10**5000}}, "traffic[0].arrival.users: must be an integer of"),
    ({"policies": [{"policy": "buckets", "edges": [10**5000]}]}, "policies[0].edges[0]: must be an integer of"),
])
def test_case2_absurd_numbers_are_refused_not_overflowed(changes, message):
    assert message in refusal(lambda: scenario_from_data(with_traffic(**changes)))


def test_case2_the_limit_is_a_scenario_key_and_real_loads_pass():
    big = with_traffic(**{"t.arrival.rate_per_s": 100.0, "horizon_s": 3600.0})  # 360k requests, 18.7M calls
    assert scenario_from_data(big).limits.max_events == 100_000_000
    huge = with_traffic(**{"t.arrival.rate_per_s": 1e4, "horizon_s": 3600.0})
    with pytest.raises(UserError, match="exceed limits.max_events"):
        scenario_from_data(huge)
    assert scenario_from_data({**huge, "limits": {"max_events": 10**10}}).limits.max_events == 10**10
    closed = with_traffic(**{"t.arrival": {"process": "closed", "users": 8, "think_s": 1.0}, "horizon_s": 3600.0})
    scenario_from_data(closed)  # each request takes seconds: some 10k requests, not a bound's worth
    refusal(lambda: scenario_from_data({**BASE, "limits": {"max_events": 0}}))


@pytest.mark.parametrize("knobs, message", [
    ({"steps": 100_000_000}, "traffic[0]: --steps must be at most 10000, got 100000000"),
    ({"steps": 10**5000}, "traffic[0].knobs.steps: must be an integer of at most 19 digits, got <int of 16610 bits>"),
])
def test_case2_knobs_that_multiply_work_are_bounded(knobs, message):
    data = with_traffic(**{"t.knobs": knobs})
    assert refusal(lambda: scenario_from_data(data, where="s.yaml")) == "s.yaml: " + message


def test_case2_output_tokens_are_bounded_for_describe_too():
    import workloads

    with pytest.raises(UserError, match=r"^--output-tokens must be at most \d+, got 10000000$"):
        workloads.build("llama2-7b", output_tokens=10_000_000)
    with pytest.raises(UserError, match="^--steps must be at most 10000, got 100000000$"):
        workloads.build("stable-diffusion", steps=100_000_000)


# -- case 3: context lengths -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, knobs, message", [
    ("llama2-7b", {"prompt_tokens": 12_000},
     "--prompt-tokens 12000 + --output-tokens 128 = 12128 exceeds llama2-7b's context of 4096 tokens"),
    ("llama2-7b", {"prompt_tokens": 4000, "output_tokens": 97},
     "--prompt-tokens 4000 + --output-tokens 97 = 4097 exceeds llama2-7b's context of 4096 tokens"),
    ("parti", {"prompt_tokens": 129}, "--prompt-tokens 129 exceeds parti's context of 128 tokens"),
])
def test_case3_prompt_and_output_beyond_the_context_are_refused(name, knobs, message):
    import workloads

    assert refusal(lambda: workloads.build(name, **knobs)) == message


def test_case3_autoregressive_workloads_state_their_context_and_fill_it():
    import workloads

    assert workloads.get("llama2-7b").context_tokens == 4096 and workloads.get("parti").context_tokens == 128
    decode = workloads.build("llama2-7b", prompt_tokens=4000, output_tokens=96).stage("decode")
    assert decode.graph(call=decode.calls - 1).attention_ops[0].shape.kv_len == 4095
    data = with_traffic(**{"t.workload": "llama2-7b", "t.knobs": {"prompt_tokens": 12_000}})
    assert refusal(lambda: scenario_from_data(data, where="s.yaml")).startswith("s.yaml: traffic[0]: --prompt-tokens")


# -- case 4: result paths --------------------------------------------------------------------------------------

NAME_RULE = "must be a folder name of up to 100 letters, digits, '-', '_' or '.' (not '.' or '..'), got "


@pytest.mark.parametrize("name", ["../../escaped", "..", ".", "a/b", "/abs", "a\\b", "nul\0", "x" * 101, "é", " "])
def test_case4_a_scenario_or_policy_name_must_be_one_safe_folder(name):
    message = refusal(lambda: scenario_from_data({**BASE, "name": name}, where="s.yaml"))
    assert message == f"s.yaml: name: {NAME_RULE}{excerpt(name)}"
    policies = [{"policy": "fcfs", "name": name}]
    message = refusal(lambda: scenario_from_data({**BASE, "policies": policies}, where="s.yaml"))
    assert message == f"s.yaml: policies[0].name: {NAME_RULE}{excerpt(name)}"


def test_case4_ordinary_names_still_load():
    for name in ("pods", "sweep-pods-3", "pods-2-stagger-0.5", "A_b.c", "x" * 100):
        assert scenario_from_data({**BASE, "name": name, "policies": [{"policy": "fcfs", "name": name}]}).name == name


# -- case 6: the seed ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, message", [
    (-1, "seed: must be >= 0, got -1"),
    (1.5, "seed: must be an integer, got 1.5"),
    ("7", "seed: must be an integer, got '7'"),
    (2**32, "seed: must be <= 4294967295, got 4294967296"),
    (10**5000, "seed: must be an integer of at most 19 digits, got <int of 16610 bits>"),
], ids=["negative", "float", "string", "2**32", "huge"])
def test_case6_a_scenario_seed_is_a_32_bit_non_negative_integer(value, message):
    assert refusal(lambda: scenario_from_data({**BASE, "seed": value}, where="s.yaml")) == "s.yaml: " + message


@pytest.mark.parametrize("text, message", [
    ("-1", "--seed: must be >= 0, got -1"),
    ("1.5", "--seed: must be an integer, got '1.5'"),
    ("", "--seed: must be an integer, got ''"),
    ("4294967296", "--seed: must be <= 4294967295, got 4294967296"),
    ("9" * 5000, "--seed: must be <= 4294967295, got " + excerpt("9" * 5000)),
    ("١٢", "--seed: must be an integer, got '١٢'"),
])
def test_case6_the_seed_validator_takes_command_line_text_too(text, message):
    from emulator.engine.scenario import check_seed

    assert refusal(lambda: check_seed(text, "--seed")) == message


def test_case6_valid_seeds_pass_through():
    from emulator.engine.scenario import check_seed

    assert [check_seed(v) for v in (0, 7, 4294967295, "12", " 3 ", "+5")] == [0, 7, 4294967295, 12, 3, 5]
    assert scenario_from_data({**BASE, "seed": 4294967295}).seed == 4294967295
