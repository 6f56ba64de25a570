"""A request: one traffic class's workload with its knobs, arriving at a time, and its progress."""

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
    on_done: object = None  # closed-loop users wait on this SimPy event
    held_bytes: int | None = None  # memory reserved on its device while admitted there (None: not admitted)
    stage: Stage = field(init=False)  # the current stage (kept as a field: the engine reads it every step)

    def __post_init__(self) -> None:
        self.stage = self.cls.pipeline.stages[0]

    def next_stage(self) -> bool:
        """Move on to the next stage; False when the pipeline is done."""
        self.stage_index += 1
        self.calls_done = 0
        stages = self.cls.pipeline.stages
        if self.stage_index == len(stages):
            return False
        self.stage = stages[self.stage_index]
        return True

    @property
    def calls_left(self) -> int:
        return self.stage.calls - self.calls_done

    @property
    def stage_key(self) -> tuple[str, int]:
        """Requests with equal keys run the same graph and may batch without padding."""
        return (self.cls.pipeline_key, self.stage_index)

    @property
    def pad_key(self) -> tuple[str, str]:
        """Requests with equal keys share weights and may batch padded to the largest member."""
        return (self.cls.pipeline.workload, self.stage.name)
