"""WorkloadConfig: the knobs of one request, and their validation.

A workload takes the fields its defaults set (not None); asking a workload for
a knob it does not have is a user error, as is an impossible value or one past
the bounds that keep the work of one request finite (MAXIMA).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from emulator.errors import UserError, clip, excerpt
from emulator.ops import DTYPE_BYTES


@dataclass(frozen=True)
class WorkloadConfig:
    batch: int = 1  # images, videos or sequences per request
    image_size: int | None = None  # output side in pixels (square outputs)
    height: int | None = None  # output height in pixels (models whose outputs need not be square)
    width: int | None = None  # output width in pixels
    frames: int | None = None  # video frames
    steps: int | None = None  # denoising or parallel-decoding steps of the first generator stage
    prompt_tokens: int | None = None  # text tokens
    output_tokens: int | None = None  # generated tokens (LLM)
    guidance: bool | None = None  # classifier-free guidance: conditional + unconditional batch
    guidance_mode: str | None = None  # how guidance runs: one of GUIDANCE_MODES
    dtype: str = "fp16"
    cache: str | None = None  # step caching of the denoiser: a preset name or a method (workloads.caching)
    cfg_steps: str | None = None  # guidance only on these steps: half-open 0-based ranges "0:10,40:50"

    def asdict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


ALWAYS_TAKEN = ("batch", "dtype")
WITH_STEPS = ("cache", "cfg_steps")  # taken by every workload that takes steps (a denoising loop)
POSITIVE = ("batch", "frames", "steps", "prompt_tokens", "output_tokens", "image_size", "height", "width")
# How a diffusion model runs classifier-free guidance: conditional and unconditional passes as one call of
# twice the batch, as two calls per step, or not at all (guidance distilled into the model, or off).
GUIDANCE_MODES = ("batched", "two-calls", "distilled", "off")
KNOBS = ("batch", "image_size", "height", "width", "frames", "steps", "prompt_tokens", "output_tokens", "guidance",
         "guidance_mode", "dtype", "cache", "cfg_steps")  # every knob, in the order flags and errors list them
MAXIMA = {  # knobs that multiply the stage calls of one request, bounded well past real use
    "steps": 10_000,  # denoising schedules run up to 1000 steps
    "output_tokens": 100_000,  # past every model's context here
}


def check_counts(cfg: WorkloadConfig) -> None:
    """Every count knob is a positive integer, within MAXIMA where it has a bound."""
    for key in POSITIVE:
        value = getattr(cfg, key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"--{key.replace('_', '-')} must be a positive integer, got {excerpt(value)}")
        if value > MAXIMA.get(key, value):
            raise UserError(f"--{key.replace('_', '-')} must be at most {MAXIMA[key]}, got {excerpt(value)}")


def check_context(name: str, cfg: WorkloadConfig, context_tokens: int | None) -> None:
    """Prompt plus output tokens fit the model's context, where it states one."""
    used = (cfg.prompt_tokens or 0) + (cfg.output_tokens or 0)
    if context_tokens is None or used <= context_tokens:
        return
    if cfg.output_tokens is None:
        raise UserError(f"--prompt-tokens {used} exceeds {name}'s context of {context_tokens} tokens")
    raise UserError(f"--prompt-tokens {cfg.prompt_tokens} + --output-tokens {cfg.output_tokens} = {used} exceeds "
                    f"{name}'s context of {context_tokens} tokens")


def resolve(name: str, defaults: WorkloadConfig, image_sizes: range | None, **overrides) -> WorkloadConfig:
    """Defaults with the given overrides (None means 'not given'), validated."""
    taken = [f.name for f in fields(WorkloadConfig) if f.name in ALWAYS_TAKEN or getattr(defaults, f.name) is not None
             or (f.name in WITH_STEPS and defaults.steps is not None)]
    given = {k: v for k, v in overrides.items() if v is not None}
    for key in given:
        if key not in taken:
            flags = ", ".join("--" + k.replace("_", "-") for k in taken)
            raise UserError(f"{name} takes no --{clip(key).replace('_', '-')}; it takes {flags}")
    cfg = replace(defaults, **given)
    check_counts(cfg)
    if cfg.guidance_mode is not None and cfg.guidance_mode not in GUIDANCE_MODES:
        raise UserError(f"--guidance-mode {excerpt(cfg.guidance_mode)} is not one of {', '.join(GUIDANCE_MODES)}")
    if cfg.dtype not in DTYPE_BYTES:
        raise UserError(f"--dtype {excerpt(cfg.dtype)} is not one of {', '.join(DTYPE_BYTES)}")
    if image_sizes is not None and cfg.image_size not in image_sizes:
        raise UserError(
            f"--image-size {excerpt(cfg.image_size)} is not valid for {name}: use a multiple of {image_sizes.step} "
            f"from {image_sizes.start} to {image_sizes[-1]}"
        )
    return cfg
