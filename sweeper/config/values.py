"""Validators for sweep-file values, one style for every section: ``check_*`` build rules
that return the clean value or raise ``ValueError``; ``checked`` turns that into a one-line
``SpecError`` naming the file and key path."""

from __future__ import annotations

import math
from typing import Any, Callable

from sweeper.errors import SpecError


def err(source: str, path: str, msg: str) -> SpecError:
    return SpecError(source, path, msg)


def as_number(value: Any) -> Any:
    # PyYAML reads "1e-3" as a string (YAML 1.1); accept it as the float people meant.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_float(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> float:
        v = as_number(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{v!r} is not a number")
        if not math.isfinite(v):
            raise ValueError(f"{v!r} is not a finite number")
        bad = (lo is not None and (v < lo or (lo_open and v == lo))) or (
            hi is not None and (v > hi or (hi_open and v == hi))
        )
        if bad:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            if lo is not None and hi is None:
                raise ValueError(f"{v!r} must be {'>' if lo_open else '>='} {lo:g}")
            raise ValueError(f"{v!r} is not in {left}{lo:g}, {hi:g}{right}")
        return float(v)

    return check


def check_int(lo: int) -> Callable[[Any], Any]:
    def check(v: Any) -> int:
        v = as_number(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or int(v) != v:
            raise ValueError(f"{v!r} is not an integer")
        if v < lo:
            raise ValueError(f"{int(v)!r} must be >= {lo}")
        return int(v)

    return check


def check_choice(choices: tuple[str, ...] | dict[str, str], what: str) -> Callable[[Any], Any]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in choices:
            raise ValueError(f"{v!r} is not a known {what} (known: {', '.join(choices)})")
        return v.lower()

    return check


def check_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    raise ValueError(f"{v!r} is not true/false")


def check_scalar(v: Any) -> Any:
    if isinstance(v, str):
        v = as_number(v)
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{v!r} is not a finite number")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise ValueError(f"{v!r} is not a scalar (number, string or bool)")

def checked(source: str, path: str, rule: Callable[[Any], Any], v: Any) -> Any:
    try:
        return rule(v)
    except ValueError as exc:
        raise err(source, path, str(exc)) from None


POSITIVE_INT = check_int(1)
POSITIVE = check_float(0.0, None, lo_open=True)
FRACTION = check_float(0.0, 1.0, hi_open=True)


def mapping(source: str, path: str, raw: Any, allowed: set[str] | None = None) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise err(source, path, f"{raw!r} is not a mapping")
    if allowed is not None:
        for k in raw:
            if k not in allowed:
                raise err(source, f"{path}.{k}" if path else str(k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return raw

