"""Per-call schedules of a stage: which calls compute everything, which reuse cached work, which run guided.

Step caching (TeaCache, first-block cache, FORA, DeepCache) makes the calls of
a denoising loop unequal: a `full` call computes every block; a `skip` call
reuses the cached residual of the whole block stack (it runs only the ops
outside the blocks, the embeddings and the output head, plus one elementwise
add of the cached residual); a `prefix(k)` call computes the blocks of depth
below k and reuses the cached residual of the rest (first-block cache: k = 1;
DeepCache on a UNet: the outer k levels in and out). Classifier-free guidance
on part of the steps makes calls unequal too: under `batched` guidance an
unguided call runs half the batch (`half`), under `two-calls` guidance an
unguided step runs one call instead of two.

A schedule is decided per step, then expanded to the stage's calls by the
guidance mode. The emulator costs work only; it says nothing about the image or
video quality a schedule gives.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from functools import cached_property

from emulator.errors import UserError, excerpt

FULL = 1 << 30  # the depth of a call that computes every block


@dataclass(frozen=True, order=True)
class CallKind:
    depth: int = FULL  # blocks computed, by depth from the input: FULL every block, 0 none (skip)
    half: bool = False  # batched guidance off at this call: half the per-call batch

    @property
    def label(self) -> str:
        base = "full" if self.depth == FULL else "skip" if self.depth == 0 else f"prefix({self.depth})"
        return base + (" unguided" if self.half else "")


FULL_CALL = CallKind()


def join(kinds) -> CallKind:
    """The kind that covers several requests' kinds in one batched call: the deepest computed, guided if any is."""
    kinds = list(kinds)
    return CallKind(max(k.depth for k in kinds), all(k.half for k in kinds))


@dataclass(frozen=True)
class CallSchedule:
    method: str  # what made it: a preset name, "share=0.5", "interval=3", "list", "cfg_steps=0:10"
    kinds: tuple[CallKind, ...]  # one per call of the stage, in call order
    cached_tensors: int = 0  # hidden-state tensors a request keeps per guidance branch while it lives
    branches: int = 1  # separate caches: 2 under two-calls guidance (conditional and unconditional)
    note: str = ""  # the method's published behaviour and its source

    @cached_property
    def counts(self) -> dict[CallKind, int]:
        """Calls per kind, kinds in order of first use."""
        return dict(Counter(self.kinds))

    @property
    def caches(self) -> bool:
        return any(k.depth != FULL for k in self.kinds)

    def shares(self) -> dict[str, float]:
        """Share of the stage's calls per kind label."""
        return {k.label: n / len(self.kinds) for k, n in self.counts.items()}

    def text(self) -> str:
        shares = ", ".join(f"{label} {100 * s:.0f}%" for label, s in self.shares().items())
        return f"{self.method}: {len(self.kinds)} calls ({shares}); image/video quality is not modelled"


def spread(steps: int, computed: int) -> list[bool]:
    """`computed` of `steps` steps computed in full, evenly spread, the first always (a runtime method's average
    share placed deterministically)."""
    computed = min(max(computed, 1), steps)
    chosen = {j * steps // computed for j in range(computed)}
    return [i in chosen for i in range(steps)]


def expand(step_depths: list[int], guided: list[bool], mode: str) -> tuple[CallKind, ...]:
    """Calls of a stage from per-step depths and guidance: 'batched' halves unguided calls' batch, 'two-calls'
    runs a guided step as two calls (conditional, then unconditional) and an unguided one as one."""
    kinds: list[CallKind] = []
    for depth, g in zip(step_depths, guided):
        if mode == "two-calls":
            kinds += [CallKind(depth)] * (2 if g else 1)
        else:
            kinds.append(CallKind(depth, half=mode == "batched" and not g))
    return tuple(kinds)


def parse_ranges(text: str, steps: int) -> list[bool]:
    """'0:10,40:50' -> which of `steps` steps are guided (half-open ranges of 0-based steps)."""
    guided = [False] * steps
    for part in str(text).split(","):
        bounds = part.strip().split(":")
        try:
            start, end = (int(b) for b in bounds)
        except ValueError:
            raise UserError(f"cfg_steps {excerpt(text)}: give half-open step ranges START:END separated by commas, "
                            f"e.g. 0:10,40:50") from None
        if not 0 <= start < end <= steps:
            raise UserError(f"cfg_steps range {excerpt(part)} is outside the {steps} steps (0:{steps})")
        for i in range(start, end):
            guided[i] = True
    return guided


KIND_WORDS = ("full", "skip", "prefix-K")


def parse_kind(word: str) -> int:
    """'full' | 'skip' | 'prefix-K' -> a depth."""
    word = word.strip()
    if word == "full":
        return FULL
    if word == "skip":
        return 0
    if word.startswith("prefix-") and word[7:].isdigit() and int(word[7:]) > 0:
        return int(word[7:])
    raise UserError(f"cache list entry {excerpt(word)} is not one of {', '.join(KIND_WORDS)}")
