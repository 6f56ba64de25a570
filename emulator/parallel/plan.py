"""Parallel plans as data, and their validation against a stage's graph.

A `ParallelPlan` gives one stage's degrees of parallelism, after Calculon's
separation of model, execution plan and system: `ulysses` (sequence parallel,
heads exchanged by all-to-all around attention), `ring` (ring attention: query
blocks stay, key/value blocks travel), `cfg` (classifier-free guidance's
conditional and unconditional passes on different GPUs), `tensor`
(Megatron tensor parallel), `pipefusion` (xDiT's patch-level pipeline: the
layers in `pipefusion` stages, the sequence in `patches` patches, default one
per stage; `emulator.parallel.pipefusion`) and `spatial` (a VAE decoder's
latent split by rows, DistVAE style; `emulator.parallel.spatial`); `degree`
GPUs in all (`patches` is not a degree). A `Plan` maps stage names to
plans; a stage it does not name runs on one GPU. `parse_plan` reads the
command line's compact form, `transformer:ulysses=4,cfg=2` (several stages
separated by `;`), and `check` refuses, in one line, a plan a stage's graph
cannot take:

- ulysses x tensor must divide every attention's heads (valid degrees listed);
- ring x ulysses must divide the longest self-attention's sequence;
- tensor must divide the attention and MLP widths;
- cfg is 2, with guidance batched (an even batch) or run as two calls;
- pipefusion combines only with cfg, needs at most as many stages as layers
  and at least as many patches as stages, and no more patches than tokens;
  patches needs pipefusion;
- spatial stands alone, on a stage with row-reading convolutions, at most
  the latent's rows (valid degrees listed).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from math import gcd

from emulator.errors import UserError
from emulator.graph import OpGraph
from emulator.parallel.listing import divisors, listed
from emulator.parallel.pipefusion import check_pipefusion
from emulator.parallel.roles import longest_sequence, tensor_roles
from emulator.parallel.spatial import check_spatial
from emulator.shapes import Linear


@dataclass(frozen=True)
class ParallelPlan:
    """Degrees of parallelism of one stage; every degree 1 is one GPU."""

    ulysses: int = 1
    ring: int = 1
    cfg: int = 1
    tensor: int = 1
    pipefusion: int = 1
    patches: int = 0  # PipeFusion's patches per step; 0: one per pipeline stage (xDiT's default)
    spatial: int = 1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            least = 0 if f.name == "patches" else 1
            if not isinstance(value, int) or value < least:
                raise UserError(f"parallel degree {f.name} must be a positive integer, got {value!r}")

    @property
    def degree(self) -> int:
        """GPUs the stage runs on: the product of the degrees."""
        return self.ulysses * self.ring * self.cfg * self.tensor * self.pipefusion * self.spatial

    @property
    def patch_count(self) -> int:
        """Patches each PipeFusion step is split into (1 without PipeFusion)."""
        return self.patches or self.pipefusion

    @property
    def sequence(self) -> int:
        """Ranks the sequence is split over (Ulysses x ring)."""
        return self.ulysses * self.ring

    def text(self) -> str:
        parts = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                 if getattr(self, f.name) > 1 or (f.name == "patches" and self.patches)]
        return ",".join(parts) or "one GPU"


ONE_GPU = ParallelPlan()


@dataclass(frozen=True)
class Plan:
    """Stage name -> ParallelPlan; stages not named run on one GPU."""

    stages: tuple[tuple[str, ParallelPlan], ...] = ()

    def for_stage(self, name: str) -> ParallelPlan:
        return dict(self.stages).get(name, ONE_GPU)

    def text(self) -> str:
        return "; ".join(f"{name}:{plan.text()}" for name, plan in self.stages)


KEYS = tuple(f.name for f in fields(ParallelPlan))


def parse_stage_plan(text: str) -> ParallelPlan:
    """'ulysses=4,cfg=2' -> ParallelPlan(ulysses=4, cfg=2)."""
    degrees: dict[str, int] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in KEYS or not sep:
            raise UserError(f"--parallel: {item!r} is not DEGREE=N with DEGREE one of {', '.join(KEYS)}")
        if key in degrees:
            raise UserError(f"--parallel: {key} given twice")
        if not value.strip().isdigit() or int(value) < 1:
            raise UserError(f"--parallel: {key} must be a positive integer, got {value.strip()!r}")
        degrees[key] = int(value)
    if not degrees:
        raise UserError(f"--parallel: no degrees in {text!r}; e.g. transformer:ulysses=4,cfg=2")
    return ParallelPlan(**degrees)


def parse_plan(text: str, stage_names: tuple[str, ...]) -> Plan:
    """'transformer:ulysses=4,cfg=2; vae_decoder:tensor=2' -> Plan; each STAGE must be one of `stage_names`."""
    stages: dict[str, ParallelPlan] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, degrees = part.partition(":")
        name = name.strip()
        if not sep:
            raise UserError(f"--parallel: {part!r} is not STAGE:DEGREE=N,...; e.g. transformer:ulysses=4,cfg=2")
        if name not in stage_names:
            raise UserError(f"--parallel: no stage {name!r}; stages: {', '.join(stage_names)}")
        if name in stages:
            raise UserError(f"--parallel: stage {name} given twice")
        stages[name] = parse_stage_plan(degrees)
    if not stages:
        raise UserError("--parallel: empty plan; e.g. transformer:ulysses=4,cfg=2")
    return Plan(tuple(stages.items()))


# -- validation against the graph ----------------------------------------------------------------------------
def heads_gcd(graph: OpGraph) -> int:
    """The largest head count dividing every attention's heads (0 without attention)."""
    g = 0
    for op in graph.attention_ops:
        g = gcd(g, op.shape.heads)
    return g


def check_heads(stage: str, graph: OpGraph, plan: ParallelPlan) -> None:
    """Ulysses and tensor parallel both split heads: their product must divide every attention's heads."""
    split = plan.ulysses * plan.tensor
    if split == 1:
        return
    heads = heads_gcd(graph)
    what = " x ".join(f"{k}={getattr(plan, k)}" for k in ("ulysses", "tensor") if getattr(plan, k) > 1)
    what += f" = {split}" if "x" in what else ""
    if not heads:
        raise UserError(f"{stage}: {what} splits attention heads, and the stage has no attention")
    if heads % split:
        raise UserError(f"{stage}: {what} does not divide the attention heads ({heads} in every "
                        f"attention); valid degrees: {listed(divisors(heads))}")


def check_ring(stage: str, graph: OpGraph, plan: ParallelPlan) -> None:
    """Ring attention splits the longest self-attention's sequence into `ring` equal blocks."""
    if plan.ring == 1:
        return
    length = longest_sequence(graph)
    if not length:
        raise UserError(f"{stage}: ring={plan.ring} needs a self-attention, and the stage has none")
    if length % (plan.ring * plan.ulysses):
        raise UserError(f"{stage}: ring={plan.ring} x ulysses={plan.ulysses} does not divide the sequence of "
                        f"{length} tokens; valid ring degrees: {listed(divisors(length // gcd(length, plan.ulysses)))}")


def check_tensor(stage: str, graph: OpGraph, plan: ParallelPlan) -> None:
    """Tensor parallel splits the widths of the linears around attention and the MLP (their gcd)."""
    if plan.tensor == 1:
        return
    roles = tensor_roles(graph)
    widths = 0
    for name, role in roles.linears.items():
        shape: Linear = graph.op(name).shape
        widths = gcd(widths, shape.n if role == "column" else shape.k)
    if not widths:
        raise UserError(f"{stage}: tensor={plan.tensor} needs attention or MLP linears, and the stage has none")
    if widths % plan.tensor:
        raise UserError(f"{stage}: tensor={plan.tensor} does not divide the attention and MLP widths (gcd "
                        f"{widths}); valid degrees: {listed(divisors(widths))}")


GUIDED_MODES = ("batched", "two-calls")


def check_cfg(stage: str, plan: ParallelPlan, guidance_mode: str | None, batch: int, calls: int) -> None:
    """CFG parallel puts the conditional and unconditional passes on 2 GPUs: guidance batched (an even
    batch) or run as two calls (an even number of calls)."""
    if plan.cfg == 1:
        return
    if plan.cfg != 2:
        raise UserError(f"{stage}: cfg={plan.cfg}: classifier-free guidance has 2 passes (conditional, "
                        f"unconditional); the only CFG degree is 2")
    if guidance_mode not in GUIDED_MODES:
        raise UserError(f"{stage}: cfg=2 needs classifier-free guidance run as two passes (--guidance-mode "
                        f"batched or two-calls), this request's is {guidance_mode or 'not set'}")
    if guidance_mode == "batched" and batch % 2:
        raise UserError(f"{stage}: cfg=2 needs an even batch (conditional and unconditional halves), got {batch}")
    if guidance_mode == "two-calls" and calls % 2:
        raise UserError(f"{stage}: cfg=2 needs an even number of calls (conditional, unconditional), got {calls}")


def check_alone(stage: str, plan: ParallelPlan) -> None:
    """PipeFusion combines with CFG only; the VAE's spatial split with nothing; patches need PipeFusion."""
    if plan.patches and plan.pipefusion == 1:
        raise UserError(f"{stage}: patches={plan.patches} is PipeFusion's patch count; give pipefusion=N too")
    others = {"ulysses": plan.ulysses, "ring": plan.ring, "tensor": plan.tensor}
    if plan.pipefusion > 1 and (plan.spatial > 1 or any(v > 1 for v in others.values())):
        raise UserError(f"{stage}: pipefusion={plan.pipefusion} combines only with cfg, got {plan.text()}")
    if plan.spatial > 1 and plan.degree != plan.spatial:
        raise UserError(f"{stage}: spatial={plan.spatial} (VAE patch parallel) combines with no other degree, "
                        f"got {plan.text()}")


def check(stage: str, graph: OpGraph, plan: ParallelPlan, guidance_mode: str | None = None,
          batch: int = 1, calls: int = 1) -> None:
    """Refuse, as one UserError line, a plan this stage's graph cannot take."""
    check_alone(stage, plan)
    if plan.pipefusion > 1:
        check_pipefusion(stage, graph, plan.pipefusion, plan.patch_count)
    if plan.spatial > 1:
        check_spatial(stage, graph, plan.spatial)
    check_heads(stage, graph, plan)
    check_ring(stage, graph, plan)
    check_tensor(stage, graph, plan)
    check_cfg(stage, plan, guidance_mode, batch, calls)
