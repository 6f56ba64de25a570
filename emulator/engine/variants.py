"""A traffic class's RequestClass per prompt and output length, costed as few distinct graphs as possible.

A class with fixed lengths has one RequestClass. A class whose requests take
their lengths from distributions or a trace (`emulator.engine.lengths`) has one
per (prompt, output) it meets, made on first use and kept for the scenario's
policies. Their stages are costed as "twins": once per scenario, for each
workload and knobs, the stages of pipelines at the shortest and longest prompt
and output are compared at batch 1 (op names, shapes, dtypes). A stage equal
across prompts (or outputs) is one graph for all of them; a KV-growing stage
whose graph at a longer prompt is the shortest prompt's advanced by the
difference (LLaMA's decode: KV length prompt + 1 + call) is costed as that one
stage, `kv_offset` positions ahead, so decode calls are costed per KV length
whatever the prompt, and requests of different lengths batch together, padded
to the longest KV cache; any other stage has a graph per prompt (LLaMA's
prefill; prompts are rounded, so at most one per multiple of
`prompt_round_to`) or per output.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field

import numpy as np

from emulator.engine.lengths import LengthSampler, Lengths
from emulator.engine.request import RequestClass, token_plan
from emulator.pipeline import Pipeline, Stage

SAME, PER_PROMPT, SHIFT = "same", "per-prompt", "shift"  # how a stage's graph depends on the prompt


@dataclass
class Shared:
    """What a scenario's classes share: pipelines by knobs, twins, unique class keys, stage sequence lengths."""

    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    twins: dict[int, tuple[Stage, int]] = field(default_factory=dict)  # id(stage) -> (stage costed, kv offset)
    keys: itertools.count = field(default_factory=itertools.count)
    seq: dict[int, int] = field(default_factory=dict)  # id(stage) -> longest attention q_len of a call

    def pipeline(self, t, lengths: dict) -> tuple[str, Pipeline]:
        key = f"{t.workload}:{json.dumps({**t.knobs, **lengths}, sort_keys=True)}"
        if key not in self.pipelines:
            self.pipelines[key] = t.pipeline(lengths)
        return key, self.pipelines[key]

    def seq_len(self, stage: Stage) -> int:
        if id(stage) not in self.seq:
            self.seq[id(stage)] = max((op.shape.q_len for op in stage.graph(stage.batch).attention_ops), default=0)
        return self.seq[id(stage)]


def request_class(shared: Shared, t, index: int, lengths: dict, stage_keys=(), kv_offsets=()) -> RequestClass:
    """The RequestClass of traffic class `t` at these lengths (its knobs' where not given)."""
    key, p = shared.pipeline(t, lengths)
    loop = max(p.stages, key=lambda st: st.calls)
    twin = shared.twins.get(id(loop), (loop, 0))[0]
    prefill, decode = token_plan(p)
    return RequestClass(t.name, index, key, p, t.slo_s, loop, shared.seq_len(twin), next(shared.keys),
                        tuple(stage_keys), tuple(kv_offsets), t.ttft_slo_s, t.tpot_slo_s, prefill, decode,
                        p.params.get("output_tokens"), p.params.get("prompt_tokens"))


def same_graph(a: Stage, b: Stage, advance: int = 0) -> bool:
    """Whether b's graph at batch 1 is a's advanced by `advance` KV positions (op for op)."""
    ga, gb = a.graph(1).with_kv_advanced(advance), b.graph(1)
    return len(ga.ops) == len(gb.ops) and all(
        (x.name, x.shape, x.dtype) == (y.name, y.shape, y.dtype) for x, y in zip(ga.ops, gb.ops))


@dataclass
class Sharing:
    """How the stages of one workload at given knobs depend on the prompt and the output length."""

    base: str  # workload and knobs without lengths
    shortest: int | None  # prompt the shifted stages are costed at
    by_prompt: tuple[str, ...]  # per stage: SAME, PER_PROMPT or SHIFT
    by_output: tuple[bool, ...]  # per stage: its graph depends on the output length
    canonical: dict = field(default_factory=dict)  # twin key -> the stage costed

    @classmethod
    def of(cls, shared: Shared, t, ranges: dict) -> "Sharing":
        low = {k: low for k, (low, _, _) in ranges.items()}
        ref = shared.pipeline(t, low)[1].stages
        by_prompt, by_output = [SAME] * len(ref), [False] * len(ref)
        for key in ranges:
            other = shared.pipeline(t, {**low, key: ranges[key][1]})[1].stages
            if len(other) != len(ref):
                raise RuntimeError(f"{t.workload}: the number of stages changes with {key}")
            for i, (a, b) in enumerate(zip(ref, other)):
                if same_graph(a, b):
                    continue
                if key == "output_tokens":
                    by_output[i] = True
                elif a.kv_growth and same_graph(a, b, ranges[key][1] - low[key]):
                    by_prompt[i] = SHIFT
                else:
                    by_prompt[i] = PER_PROMPT
        base = f"{t.workload}:{json.dumps(t.knobs, sort_keys=True)}"
        return cls(base, low.get("prompt_tokens"), tuple(by_prompt), tuple(by_output))

    def twin(self, shared: Shared, t, i: int, lengths: dict, stage: Stage) -> tuple[tuple, int]:
        """(batching key, KV offset) of stage i at these lengths; registers the stage's twin."""
        prompt, how = lengths.get("prompt_tokens"), self.by_prompt[i]
        key = (self.base, i, prompt if how == PER_PROMPT else None,
               lengths.get("output_tokens") if self.by_output[i] else None)
        offset = prompt - self.shortest if how == SHIFT else 0
        if key not in self.canonical:
            at = {**lengths, "prompt_tokens": self.shortest} if how == SHIFT else lengths
            self.canonical[key] = shared.pipeline(t, at)[1].stages[i]
        canonical = self.canonical[key]
        if canonical is not stage:
            shared.twins[id(stage)] = (canonical, offset)
        return key, offset


class Variants:
    """One traffic class's RequestClasses: one for fixed lengths, else one per (prompt, output) met."""

    def __init__(self, shared: Shared, t, index: int, ranges: dict, sharing: Sharing | None):
        self.shared, self.t, self.index, self.sharing = shared, t, index, sharing
        self.name = t.name
        self.lengths = t.lengths or Lengths()
        self.round_to = self.lengths.prompt_round_to
        self.made: dict[tuple, RequestClass] = {}
        self.defaults = {}  # the knob (or the workload's default) of each length a request may leave out
        if sharing:
            params = shared.pipeline(t, {})[1].params
            self.defaults = {k: params[k] for k in ranges if params.get(k) is not None}
        low = {k: low for k, (low, _, _) in ranges.items()}
        self.proto = self.variant(low) if sharing else request_class(shared, t, index, {})

    def variant(self, lengths: dict) -> RequestClass:
        key = (lengths.get("prompt_tokens"), lengths.get("output_tokens"))
        found = self.made.get(key)
        if found is None:
            stages = self.shared.pipeline(self.t, lengths)[1].stages
            twins = [self.sharing.twin(self.shared, self.t, i, lengths, st) for i, st in enumerate(stages)]
            found = self.made[key] = request_class(self.shared, self.t, self.index, lengths,
                                                   [k for k, _ in twins], [o for _, o in twins])
        return found

    def for_run(self, rng: np.random.Generator, base_dir: str) -> "Drawer":
        return Drawer(self, LengthSampler(self.lengths, rng, base_dir) if self.sharing else None)


class Drawer:
    """One run's source of a class's RequestClass per request: fixed, or at lengths drawn or given."""

    def __init__(self, variants: Variants, sampler: LengthSampler | None):
        self.variants, self.sampler = variants, sampler
        self.name, self.round_to = variants.name, variants.round_to
        self.fixed = variants.proto if sampler is None else None

    def draw(self, given: dict | None = None) -> RequestClass:
        if self.fixed is not None:
            return self.fixed
        lengths = {**self.variants.defaults, **self.sampler.draw(), **(given or {})}
        return self.variants.variant(lengths)
