"""Per-request prompt and output lengths of a traffic class: distributions, empirical files, sampling.

A traffic class may draw each request's `prompt_tokens` and `output_tokens`
from a distribution instead of fixing them in its knobs:

    lengths:
      prompt_tokens: {dist: lognormal, median: 512, sigma: 0.6, min: 16, max: 2048}
      output_tokens: {dist: uniform, min: 16, max: 512}
      prompt_round_to: 16

`fixed` (value), `uniform` (integers min..max, both included), `lognormal`
(exp of a normal of mean ln(median) and standard deviation sigma, rounded up to
an integer, then clipped to [min, max]: values outside are set to the bound,
not drawn again; min defaults to 1, max is required), `empirical` (a value
drawn uniformly from the rows of a CSV file's column, `column` defaulting to
the length's own name; only values of the file are drawn). Prompt lengths are
then rounded up to a multiple of `prompt_round_to` (default 16) and clipped to
the distribution's bounds again, so a class costs at most one prefill graph
per multiple; output lengths are exact (decode is costed per KV length).
Draws come from the class's own generator, seeded by (seed, class position,
1), so lengths never change a class's arrival times.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

import numpy as np

from emulator.engine.schema import fail
from emulator.errors import UserError, excerpt

LENGTH_KEYS = ("prompt_tokens", "output_tokens")
NEEDS = {"fixed": ("value",), "uniform": ("min", "max"), "lognormal": ("median", "sigma", "max"),
         "empirical": ("path",)}
TAKES = {"fixed": ("value",), "uniform": ("min", "max"), "lognormal": ("median", "sigma", "min", "max"),
         "empirical": ("path", "column")}


@dataclass(frozen=True)
class LengthDist:
    dist: Literal["fixed", "uniform", "lognormal", "empirical"]
    value: int | None = field(default=None, metadata={"min": 1})  # fixed
    min: int | None = field(default=None, metadata={"min": 1})  # uniform; lognormal clip (default 1)
    max: int | None = field(default=None, metadata={"min": 1})  # uniform; lognormal clip
    median: float | None = field(default=None, metadata={"above": 0})  # lognormal: exp(mu)
    sigma: float | None = field(default=None, metadata={"min": 0})  # lognormal: std of the log
    path: str | None = None  # empirical: CSV file, relative to the scenario
    column: str | None = None  # empirical: its column (default: the length's name)

    def problem(self) -> tuple[str, str] | None:
        """(key, problem) of a missing or unused key or inverted bounds; None if well formed."""
        for key in NEEDS[self.dist]:
            if getattr(self, key) is None:
                return key, f"missing (needed by dist {self.dist})"
        for f in fields(self):
            if f.name != "dist" and f.name not in TAKES[self.dist] and getattr(self, f.name) is not None:
                return f.name, f"not used by dist {self.dist}; it takes {', '.join(TAKES[self.dist])}"
        if self.min is not None and self.max is not None and self.min > self.max:
            return "max", f"must be >= min ({self.min}), got {self.max}"
        return None

    @property
    def low(self) -> int:
        return self.min or 1


@dataclass(frozen=True)
class Lengths:
    prompt_tokens: LengthDist | None = None
    output_tokens: LengthDist | None = None
    prompt_round_to: int = field(default=16, metadata={"min": 1, "max": 4096})  # prompt granularity, tokens


def read_column(path: Path, column: str) -> np.ndarray:
    """The positive integers of one CSV column; a missing file, column or bad value is a one-line UserError."""
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or column not in reader.fieldnames:
                raise UserError(f"{path}: no column {excerpt(column)}")
            values = [row_int(path, line, column, row[column]) for line, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    if not values:
        raise UserError(f"{path}: no rows in column {excerpt(column)}")
    return np.array(values, dtype=np.int64)


def row_int(path: Path, line: int, column: str, text) -> int:
    """A CSV cell that must hold a positive integer of tokens."""
    try:
        value = int(text)
    except (TypeError, ValueError):
        raise UserError(f"{path}:{line}: {column} {excerpt(text)} is not an integer") from None
    if not 1 <= value <= 10**7:
        raise UserError(f"{path}:{line}: {column} must be from 1 to 10000000, got {value}")
    return value


def round_prompt(value: int, round_to: int, dist: LengthDist | None) -> int:
    """A prompt length rounded up to a multiple of round_to, then clipped to the distribution's bounds."""
    value = -(-value // round_to) * round_to
    if dist is not None and dist.dist in ("uniform", "lognormal"):
        value = min(max(value, dist.low), dist.max)
    return value


class LengthSampler:
    """Draws one traffic class's lengths, request by request, from its generator."""

    def __init__(self, lengths: Lengths, rng: np.random.Generator, base_dir: str):
        self.lengths, self.rng = lengths, rng
        self.draws = {key: drawer(getattr(lengths, key), key, rng, base_dir) for key in LENGTH_KEYS
                      if getattr(lengths, key) is not None}

    def draw(self) -> dict[str, int]:
        """{length name: tokens} for the lengths the class draws (prompts rounded)."""
        out = {key: draw() for key, draw in self.draws.items()}
        if "prompt_tokens" in out:
            out["prompt_tokens"] = round_prompt(out["prompt_tokens"], self.lengths.prompt_round_to,
                                                self.lengths.prompt_tokens)
        return out


def drawer(d: LengthDist, key: str, rng: np.random.Generator, base_dir: str):
    """A function returning one draw of `d`."""
    if d.dist == "fixed":
        return lambda: d.value
    if d.dist == "uniform":
        return lambda: int(rng.integers(d.min, d.max + 1))
    if d.dist == "lognormal":
        mu, low, high = math.log(d.median), d.low, d.max
        return lambda: min(max(math.ceil(rng.lognormal(mu, d.sigma)), low), high)
    values = read_column(Path(base_dir) / d.path, d.column or key)
    return lambda: int(values[rng.integers(len(values))])


def bounds(d: LengthDist, key: str, base_dir: str) -> tuple[int, int, float]:
    """(smallest, largest, typical) value `d` draws, before prompt rounding; typical is its mean (clipped)."""
    if d.dist == "fixed":
        return d.value, d.value, d.value
    if d.dist == "uniform":
        return d.min, d.max, (d.min + d.max) / 2
    if d.dist == "lognormal":
        mean = d.median * math.exp(min(d.sigma, 10) ** 2 / 2)
        return d.low, d.max, min(max(mean, d.low), d.max)
    values = read_column(Path(base_dir) / d.path, d.column or key)
    return int(values.min()), int(values.max()), float(values.mean())


def check_dist(d: LengthDist, where: str, base_dir: str) -> None:
    """A one-line UserError naming the key of a malformed length distribution."""
    problem = d.problem()
    if problem:
        fail(f"{where}.{problem[0]}", problem[1])
    if d.dist == "empirical":
        try:
            read_column(Path(base_dir) / d.path, d.column or where.rsplit(".", 1)[-1])
        except UserError as e:
            fail(f"{where}.path", str(e))
