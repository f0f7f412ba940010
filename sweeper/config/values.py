"""Validators for sweep-file values, one style for every section: ``check_*`` build rules
that return the clean value or raise ``ValueError``; ``checked`` turns that into a one-line
``SpecError`` naming the file and key path.

The same kind of value is spelled the same way in every section:

* a number may be written as YAML reads it or as a string (``1e-3``: PyYAML reads it as text);
  ``.inf``, ``.nan`` and other non-finite numbers are refused everywhere;
* an integer may be written ``3`` or ``3.0`` (not ``3.5``);
* a boolean setting takes true or false (YAML's yes/no/on/off read as those) or the number
  1 or 0, and nothing else: the rule is ``check_bool``, used by params, training and every section;
* every number sweeper knows the meaning of has a lower bound (no setting takes a negative
  number) and an upper bound: the domain of the setting (a fraction below 1) or one of the
  generous limits below, which no real sweep reaches (a larger number is a typo, or would
  overflow or hang a run). A user model's own parameters are only checked to be finite.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from sweeper.errors import SpecError

# Upper limits, each stated once: far above any real sweep, far below what breaks a run.
MAX_EPOCHS = 100_000  # training epochs; also patience and a pruner's steps and resources (epochs)
MAX_BATCH_SIZE = 1_000_000  # training and latency batch sizes
MAX_UNITS = 1_000_000  # units, fc_units, filters of a layer
MAX_LAYERS = 8  # mlp and cnn: hidden layers or conv blocks (units_1 ... units_8)
MAX_LEARNING_RATE = 1e9  # learning_rate and reduce_lr.min_lr (a huge one is how a NaN loss is tested)
MAX_PENALTY = 1_000.0  # l2 and weight_decay coefficients
MAX_EPSILON = 10.0  # an optimizer's epsilon (Keras suggests up to 1.0)
MAX_CLIP = 1e6  # clipnorm, clipvalue
MAX_MIN_DELTA = 1e6  # early_stopping / reduce_lr min_delta (a change of a loss or an accuracy)
MAX_TRIALS = 1_000_000  # trials, and trial counts of pruners, samplers and autokeras
MAX_TIMEOUT_S = 366 * 24 * 3600  # a year, in seconds
MAX_SEED = 2**32 - 1  # numpy's and Optuna's seeds
MAX_ROWS = 1_000_000_000  # data.limit
MAX_FOLDS = 1_000  # validation.kfold
MAX_REPEATS = 1_000  # validation.repeats
MAX_WORKER_DEATHS = 1_000
MAX_STEPS_PER_EXECUTION = 1_000_000
MAX_PACK = 64  # compute.fuse: trials trained as one model
MAX_LATENCY_PASSES = 1_000
MAX_REDUCTION_FACTOR = 1_000  # successive halving / hyperband
MAX_SAMPLER_NUMBER = 1e6  # a sampler's other numeric options (prior_weight, sigma0 ...)
MAX_LOSS = 1e6  # constraints on loss
MAX_PARAMS = 1e12  # constraints on n_params
MAX_LATENCY_MS = 3.6e6  # constraints on latency_ms: an hour per image


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


def _shown(limit: float) -> str:
    return f"{int(limit):,}" if float(limit).is_integer() else f"{limit:g}"


def number(v: Any) -> int | float:
    """``v`` as a finite int or float (numbers written as strings too); ``ValueError`` otherwise."""
    v = as_number(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{shown(v)} is not a number")
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{shown(v)} is not a finite number")
    return v


def shown(v: Any) -> str:
    """``repr(v)``, shortened when it is long (a 400-digit integer)."""
    text = repr(v)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


def _above(v: float, limit: float, unit: str) -> ValueError:
    return ValueError(f"{shown(v)} is more than the limit of {_shown(limit)}{' ' + unit if unit else ''}")


def check_float(lo: float, hi: float | None = None, lo_open: bool = False, hi_open: bool = False, *,
                limit: float | None = None, unit: str = "") -> Callable[[Any], Any]:
    """A finite number in ``[lo, hi]`` (``(`` / ``)`` when open): ``hi`` is the setting's own
    domain (a fraction below 1), ``limit`` a sanity cap (one of the MAX_* above); give one."""
    if hi is None and limit is None:
        raise TypeError("every number needs an upper bound (hi or limit)")

    def check(v: Any) -> float:
        v = number(v)
        if v < lo or (lo_open and v == lo):
            if hi is None:
                raise ValueError(f"{shown(v)} must be {'>' if lo_open else '>='} {lo:g}")
            raise ValueError(f"{shown(v)} is not in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")
        if hi is not None and (v > hi or (hi_open and v == hi)):
            raise ValueError(f"{shown(v)} is not in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")
        if limit is not None and v > limit:
            raise _above(v, limit, unit)
        return float(v)

    return check


def check_int(lo: int, limit: int, unit: str = "") -> Callable[[Any], Any]:
    """An integer (``3`` or ``3.0``) from ``lo`` to ``limit``."""

    def check(v: Any) -> int:
        v = number(v)
        if v != int(v):
            raise ValueError(f"{shown(v)} is not an integer")
        if v < lo:
            raise ValueError(f"{shown(v)} must be >= {lo}")
        if v > limit:
            raise _above(v, limit, unit)
        return int(v)

    check.integer = True  # type: ignore[attr-defined]
    return check


def check_choice(choices: tuple[str, ...] | dict[str, str], what: str) -> Callable[[Any], Any]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in choices:
            raise ValueError(f"{shown(v)} is not a known {what} (known: {', '.join(choices)})")
        return v.lower()

    return check


def is_bool(v: Any) -> bool:
    """Whether ``v`` is a spelling of a boolean: true/false, or the number 1 or 0."""
    return isinstance(v, bool) or (isinstance(v, (int, float)) and v in (0, 1))


def check_bool(v: Any) -> bool:
    """The one rule for boolean settings in every section: true/false, or 1/0."""
    if is_bool(v):
        return bool(v)
    raise ValueError(f"{shown(v)} is not true/false (or 1/0)")


def check_scalar(v: Any) -> Any:
    """A setting sweeper knows nothing more about (a user model's parameter): one finite value."""
    if isinstance(v, str):
        v = as_number(v)
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{shown(v)} is not a finite number")
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise ValueError(f"{shown(v)} is not a scalar (number, string or bool)")


def checked(source: str, path: str, rule: Callable[[Any], Any], v: Any) -> Any:
    try:
        return rule(v)
    except ValueError as exc:
        raise err(source, path, str(exc)) from None


FRACTION = check_float(0.0, 1.0, hi_open=True)  # [0, 1)
PROBABILITY = check_float(0.0, 1.0)  # [0, 1]
OPEN_FRACTION = check_float(0.0, 1.0, lo_open=True, hi_open=True)  # (0, 1)
EPOCHS = check_int(1, MAX_EPOCHS, "epochs")
STEPS = check_int(0, MAX_EPOCHS, "epochs")  # a count of epochs that may be 0 (patience, warm-up)
BATCH_SIZE = check_int(1, MAX_BATCH_SIZE)
UNITS = check_int(1, MAX_UNITS)
TRIALS = check_int(1, MAX_TRIALS, "trials")
TRIAL_COUNT = check_int(0, MAX_TRIALS, "trials")  # may be 0 (a pruner's or sampler's start-up trials)
LEARNING_RATE = check_float(0.0, lo_open=True, limit=MAX_LEARNING_RATE)
SECONDS = check_float(0.0, lo_open=True, limit=MAX_TIMEOUT_S, unit="seconds")
SEED = check_int(0, MAX_SEED)


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


def switch(source: str, path: str, raw: Any) -> dict[str, Any] | None:
    """A section that can be turned on with its defaults: None/false/0 -> None (off),
    true/1 -> {} (the defaults), a mapping -> itself."""
    if raw is None:
        return None
    if is_bool(raw):
        return {} if raw else None
    if not isinstance(raw, dict):
        raise err(source, path, f"{raw!r} is not a mapping (or true/false)")
    return raw
