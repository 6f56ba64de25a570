"""Typed parsing of plain YAML data into frozen dataclasses, with one-line errors.

`parse(cls, data, where)` checks a mapping against the dataclass's fields and
type hints: unknown keys, missing keys, wrong types and values outside the
bounds a field declares in its metadata (`min`, `above`, `max`; `internal`
keeps a field the caller fills out of the keys a message lists) raise a
`UserError` that names the key by its path (`policies[2].stagger`) and the
problem, quoting at most a short excerpt of the value. Supported hints: bool,
int, float, str, `X | None`, `Literal[...]`, `tuple[X, ...]`, `dict[str, X]`,
unions of scalars, and nested dataclasses.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from emulator.errors import UserError, clip, excerpt

MAX_INT = 2**63 - 1  # any count or size past a 64-bit integer is a typo, and numpy and CSV readers agree


def fail(where: str, problem: str):
    raise UserError(f"{where}: {problem}")


def type_name(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def describe(tp) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"a list of {describe(get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    if is_dataclass(tp):
        return "a mapping"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def convert(tp, value: Any, where: str, bounds: typing.Mapping = types.MappingProxyType({})):
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return convert(option, value, where, bounds)
            except UserError as e:
                last = e
                if type(value) is option:  # the value's own type, out of bounds: say why
                    raise
        if len([o for o in options if o is not type(None)]) == 1:
            raise last
        fail(where, f"must be {describe(tp)}, got {type_name(value)}")
    if origin is Literal:
        if value not in get_args(tp) or isinstance(value, bool) != any(isinstance(a, bool) for a in get_args(tp)):
            fail(where, f"must be {describe(tp)}, got {excerpt(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            fail(where, f"must be {describe(tp)}, got {type_name(value)}")
        item = get_args(tp)[0]
        return tuple(convert(item, v, f"{where}[{i}]", bounds) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            fail(where, f"must be a mapping, got {type_name(value)}")
        _key_type, item = get_args(tp)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                fail(where, f"keys must be strings, got {excerpt(k)}")
            out[k] = convert(item, v, f"{where}.{clip(k)}", bounds)
        return out
    if is_dataclass(tp):
        return parse(tp, value, where)
    if tp is bool:
        if not isinstance(value, bool):
            fail(where, f"must be true or false, got {excerpt(value)}")
        return value
    if tp is int:
        if not isinstance(value, int) or isinstance(value, bool):
            fail(where, f"must be an integer, got {excerpt(value)}")
        if abs(value) > MAX_INT:
            fail(where, f"must be an integer of at most 19 digits, got {excerpt(value)}")
        return check_bounds(value, where, bounds)
    if tp is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(as_float(value)):
            fail(where, f"must be a finite number, got {excerpt(value)}")
        return check_bounds(float(value), where, bounds)
    if tp is str:
        if not isinstance(value, str) or not value:
            fail(where, f"must be a non-empty string, got {excerpt(value)}")
        return value
    raise TypeError(f"schema: unsupported type {tp!r} at {where}")


def as_float(value: int | float) -> float:
    """`value` as a float; an integer too large for one is infinite."""
    try:
        return float(value)
    except OverflowError:
        return math.inf


def check_bounds(value, where: str, bounds: typing.Mapping):
    if "min" in bounds and value < bounds["min"]:
        fail(where, f"must be >= {bounds['min']}, got {excerpt(value)}")
    if "above" in bounds and value <= bounds["above"]:
        fail(where, f"must be > {bounds['above']}, got {excerpt(value)}")
    if "max" in bounds and value > bounds["max"]:
        fail(where, f"must be <= {bounds['max']}, got {excerpt(value)}")
    return value


def parse(cls, data: Any, where: str, parsed: typing.Mapping[str, Any] = types.MappingProxyType({})):
    """An instance of dataclass `cls` from a mapping, every value checked; `parsed` values are taken as given."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        fail(where, f"must be a mapping, got {type_name(data)}")
    hints = get_type_hints(cls)
    known = {f.name: f for f in fields(cls) if f.init}
    for key in data:
        if key not in known:
            listed = [k for k, f in known.items() if not f.metadata.get("internal")]
            fail(f"{where}.{clip(key)}" if isinstance(key, str) else where,
                 f"unknown key; expected one of: {', '.join(listed)}")
    values = {}
    for name, f in known.items():
        path = f"{where}.{name}"
        if name in parsed:
            values[name] = parsed[name]
        elif name in data:
            values[name] = convert(hints[name], data[name], path, f.metadata)
        elif f.default is MISSING and f.default_factory is MISSING:
            fail(path, "missing")
    return cls(**values)
