"""A request: one traffic class's workload with its knobs, arriving at a time, and its progress.

A RequestClass is one traffic class at one prompt and output length (a class
with fixed lengths has one). Its token plan says which stage calls emit output
tokens: each call of its KV-growing (autoregressive) stage emits one, and the
stage just before it emits the first when it runs the same weights (a prefill;
Parti's text encoder has weights of its own and emits none). A request notes
when its first and its latest token came out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from emulator.pipeline import Pipeline, Stage


@dataclass(frozen=True)
class RequestClass:
    """A traffic class at run time: its pipeline built once, shared by its requests."""

    name: str
    index: int
    pipeline_key: str  # workload and knobs: classes with equal keys share graphs and batch together
    pipeline: Pipeline
    slo_s: float | None
    loop_stage: Stage  # the stage called most often: the denoising (or decoding) loop
    bucket_seq_len: int  # longest attention sequence (query tokens) of one call of the loop stage
    key: int = -1  # unique per RequestClass of a run's context: caches per class key on it
    stage_keys: tuple = ()  # per stage: requests with equal keys run the same graph (default: pipeline, stage)
    kv_offsets: tuple[int, ...] = ()  # per stage: KV positions ahead of the stage its calls are costed as
    ttft_slo_s: float | None = None
    tpot_slo_s: float | None = None
    prefill_index: int | None = None  # stage whose end emits the first output token
    decode_index: int | None = None  # the KV-growing stage: one output token per call
    output_tokens: int | None = None  # the workload's output_tokens knob (requests.csv)
    prompt_tokens: int | None = None  # the workload's prompt_tokens knob (requests.csv)

    @property
    def tokens_out(self) -> int:
        """Output tokens a request emits (0 without an autoregressive stage)."""
        if self.decode_index is None:
            return 0
        return self.pipeline.stages[self.decode_index].calls + (self.prefill_index is not None)

    @property
    def has_slo(self) -> bool:
        return self.slo_s is not None or self.ttft_slo_s is not None or self.tpot_slo_s is not None


def token_plan(pipeline: Pipeline) -> tuple[int | None, int | None]:
    """(prefill stage index or None, decode stage index or None) of a pipeline (see the module docstring)."""
    stages = pipeline.stages
    decode = next((i for i, s in enumerate(stages) if s.kv_growth), None)
    if decode is None:
        return None, None
    prefill = decode - 1 if decode and stages[decode - 1].weights == stages[decode].weights else None
    return prefill, decode


@dataclass(eq=False, slots=True)  # slots: the engine creates and reads millions of these
class Request:
    id: int
    cls: RequestClass
    arrival_s: float
    stage_index: int = 0
    calls_done: int = 0  # calls of the current stage
    device: object = None  # where the current stage runs
    first_start_s: float | None = None  # first call of any stage started (queueing delay ends)
    done_s: float | None = None
    first_token_s: float | None = None  # the call emitting the first output token ended
    last_token_s: float | None = None  # the call emitting the latest output token ended
    kv_offset: int = 0  # of the current stage: KV positions ahead of the stage its calls are costed as
    on_done: object = None  # closed-loop users wait on this SimPy event
    held_bytes: int | None = None  # memory reserved on its device while admitted there (None: not admitted)
    gang: int = 1  # most devices it held at once (gang policies)
    stage: Stage = field(init=False)  # the current stage (kept as a field: the engine reads it every step)

    def __post_init__(self) -> None:
        self.stage = self.cls.pipeline.stages[0]
        if self.cls.kv_offsets:
            self.kv_offset = self.cls.kv_offsets[0]

    def next_stage(self) -> bool:
        """Move on to the next stage; False when the pipeline is done."""
        self.stage_index += 1
        self.calls_done = 0
        stages = self.cls.pipeline.stages
        if self.stage_index == len(stages):
            return False
        self.stage = stages[self.stage_index]
        if self.cls.kv_offsets:
            self.kv_offset = self.cls.kv_offsets[self.stage_index]
        return True

    @property
    def calls_left(self) -> int:
        return self.stage.calls - self.calls_done

    @property
    def stage_key(self) -> tuple:
        """Requests with equal keys run the same graph and may batch without padding (decode: padded to the
        longest KV cache)."""
        if self.cls.stage_keys:
            return self.cls.stage_keys[self.stage_index]
        return (self.cls.pipeline_key, self.stage_index)

    @property
    def pad_key(self) -> tuple[str, str]:
        """Requests with equal keys share weights and may batch padded to the largest member."""
        return (self.cls.pipeline.workload, self.stage.name)
