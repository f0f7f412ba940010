"""Searched and fixed parameters: keys are scikeras routed names (``optimizer__learning_rate``,
``model__dropout``, ``batch_size``), aliases normalised, values checked per key."""

from __future__ import annotations

import contextvars
import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from sweeper.config import conditions, names
from sweeper.config.values import (
    BATCH_SIZE,
    EPOCHS,
    FRACTION,
    LEARNING_RATE,
    MAX_CLIP,
    MAX_EPSILON,
    MAX_LAYERS,
    MAX_PENALTY,
    MAX_TRIALS,
    UNITS,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_scalar,
    checked,
    err,
    number,
)
from sweeper.errors import SpecError


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: a list of values, or a range (``low``/``high``/``log``/``step``)."""

    name: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    is_int: bool = False
    # ``when:``: the parameter exists only where each parent holds one of its values
    # (config/conditions.py); parents sorted by name, values in a stable order.
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def is_grid(self) -> bool:
        return self.values is not None


PENALTY = check_float(0.0, limit=MAX_PENALTY)

# The rule of each parameter sweeper knows (in params: and training:); other keys take any
# finite scalar (a user model's own parameters).
RULES: dict[str, Callable[[Any], Any]] = {
    "optimizer": check_choice(names.OPTIMIZERS, "optimizer"),
    "optimizer__learning_rate": LEARNING_RATE,
    "optimizer__momentum": FRACTION,
    "optimizer__nesterov": check_bool,
    "optimizer__centered": check_bool,
    "batch_size": BATCH_SIZE,
    "epochs": EPOCHS,
    "model__dropout": FRACTION,
    "model__batchnorm": check_bool,
    "model__activation": check_choice(names.ACTIVATIONS, "activation"),
    "model__units": UNITS,
    "model__kernel_initializer": check_choice(names.INITIALIZERS, "kernel initializer"),
    "model__l2": PENALTY,
}
# The optimizer's other keyword arguments (names.OPTIMIZER_KWARGS).
OPTIMIZER_RULES: dict[str, Callable[[Any], Any]] = {
    "optimizer__rho": FRACTION,
    "optimizer__beta_1": FRACTION,
    "optimizer__beta_2": FRACTION,
    "optimizer__epsilon": check_float(0.0, lo_open=True, limit=MAX_EPSILON),
    "optimizer__weight_decay": PENALTY,
    "optimizer__amsgrad": check_bool,
    "optimizer__clipnorm": check_float(0.0, lo_open=True, limit=MAX_CLIP),
    "optimizer__clipvalue": check_float(0.0, lo_open=True, limit=MAX_CLIP),
}
# Parameters of the built-in models beyond RULES (a user model's parameter of the same name
# means the same kind of value: a layer width, a dropout rate, a flag).
BUILDER_RULES: dict[str, Callable[[Any], Any]] = {
    "model__fc_units": UNITS,
    "model__filters": UNITS,
    "model__inner_dropout": FRACTION,
    "model__conv512": check_bool,
    "model__max_trials": check_int(1, MAX_TRIALS, "trials"),  # model: autokeras
    "model__layers": check_int(1, MAX_LAYERS, "layers"),  # mlp, cnn: hidden layers / conv blocks
}
# One width per layer (mlp: units_1 ..., cnn: filters_1 ...; config/models.py).
NUMBERED_WIDTH = re.compile(r"model__(units|filters)_[1-9][0-9]*")
# A range of these is an integer range unless it says ``type: float``.
INT_PARAMS = {k for k, rule in {**RULES, **BUILDER_RULES}.items() if getattr(rule, "integer", False)}


def rule_for(key: str) -> Callable[[Any], Any]:
    """The one rule for a parameter's value, the same in params: and training:."""
    if NUMBERED_WIDTH.fullmatch(key):
        return UNITS
    return RULES.get(key) or OPTIMIZER_RULES.get(key) or BUILDER_RULES.get(key) or check_scalar


def canonical_key(key: str) -> str:
    return names.ALIASES.get(key, key)


def check_key(source: str, path: str, key: str, builder_keys: set[str] | None) -> str:
    """The routed name of a parameter key; ``builder_keys`` None accepts any ``model__`` key."""
    canon = canonical_key(key)
    if builder_keys is None and canon.startswith("model__"):
        return canon
    builder_keys = builder_keys or set()
    if canon in names.ESTIMATOR_KEYS or canon in RULES:
        if canon.startswith("model__") and canon[7:] not in builder_keys:
            raise err(source, path, f"the model takes no parameter {canon[7:]!r} (it takes: {', '.join(sorted(builder_keys))})")
        return canon
    if canon.startswith("optimizer__") and canon[11:] in names.OPTIMIZER_KWARGS:
        return canon
    if canon.startswith("model__") and canon[7:] in builder_keys:
        return canon
    known = sorted(set(names.ESTIMATOR_KEYS) | set(names.ALIASES) | {f"model__{k}" for k in builder_keys})
    raise err(source, path, f"unknown parameter (known: {', '.join(known)})")



# Set while a study's stored definition is read back: it was validated when the study was made,
# perhaps under older, looser rules, and stored work must stay readable.
STORED = contextvars.ContextVar("sweeper_stored_definition", default=False)


def value(source: str, path: str, key: str, v: Any) -> Any:
    try:
        return checked(source, path, rule_for(key), v)
    except SpecError:
        if STORED.get():
            return checked(source, path, check_scalar, v)
        raise


def parse_params(source: str, raw: dict[Any, Any], builder_keys: set[str] | None) -> dict[str, ParamSpec]:
    """The ``params:`` section: each key's routed name and value rule, then their conditions."""
    params: dict[str, ParamSpec] = {}
    written: dict[str, str] = {}
    for key, spec in raw.items():
        canon = check_key(source, f"params.{key}", str(key), builder_keys)
        if canon in params:
            raise err(source, f"params.{key}", f"{canon!r} is given twice")
        params[canon], written[canon] = parse_param(source, f"params.{key}", canon, spec), str(key)
    conditions.check(source, params, written)
    return params


# A parameter written as a mapping: a range, or a list as ``values`` (or ``choices``), with ``when``.
PARAM_KEYS = {"low", "high", "log", "step", "type", "values", "choices", "when"}


def parse_param(source: str, path: str, key: str, raw: Any) -> ParamSpec:
    if isinstance(raw, list):
        if not raw:
            raise err(source, path, "empty list: give at least one value")
        values = tuple(value(source, f"{path}[{i}]", key, v) for i, v in enumerate(raw))
        if len(set(map(repr, values))) != len(values):
            raise err(source, path, f"{raw!r} has duplicate values")
        return ParamSpec(key, values=values)
    if isinstance(raw, dict):
        extra = set(raw) - PARAM_KEYS
        if extra:
            raise err(source, f"{path}.{sorted(extra, key=str)[0]}", f"unknown key (allowed: {', '.join(sorted(PARAM_KEYS))})")
        if "when" in raw:
            when = parse_when(source, f"{path}.when", raw["when"])
            return replace(parse_param(source, path, key, {k: v for k, v in raw.items() if k != "when"}), when=when)
        listed = next((k for k in ("values", "choices") if k in raw), None)
        if listed is not None:
            if set(raw) != {listed}:
                raise err(source, path, f"a '{listed}' parameter takes no other keys (but 'when')")
            if isinstance(raw[listed], dict):
                raise err(source, f"{path}.{listed}", f"{raw[listed]!r} is not a list of values")
            return parse_param(source, f"{path}.{listed}", key, raw[listed])
        for bound in ("low", "high"):
            if bound not in raw:
                raise err(source, path, f"a range needs '{bound}' (or give a list of values)")
        low = value(source, f"{path}.low", key, raw["low"])
        high = value(source, f"{path}.high", key, raw["high"])
        if not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in (low, high)):
            raise err(source, path, "a range needs numeric low/high; use a list for categories")
        if low > high:
            raise err(source, f"{path}.low", f"{low!r} is greater than high {high!r}")
        log = checked(source, f"{path}.log", check_bool, raw.get("log", False))
        if log and low <= 0:
            raise err(source, f"{path}.low", f"{low!r} must be > 0 on a log scale")
        kind = raw.get("type", "int" if key in INT_PARAMS or NUMBERED_WIDTH.fullmatch(key) else "float")
        if kind not in ("int", "float"):
            raise err(source, f"{path}.type", f"{kind!r} is not int or float")
        step = raw.get("step")
        if step is not None:
            step = checked(source, f"{path}.step", _step_rule(low, high), step)
            if log:
                raise err(source, f"{path}.step", "step cannot be combined with log")
        is_int = kind == "int"
        if is_int:
            low, high = int(low), int(high)
        return ParamSpec(key, low=low, high=high, log=log, step=step, is_int=is_int)
    return ParamSpec(key, values=(value(source, path, key, raw),))


def _step_rule(low: float, high: float) -> Callable[[Any], Any]:
    """A range's step: a finite number above 0, at most the range's width (when it has one)."""

    def check(v: Any) -> Any:
        v = number(v)
        if v <= 0:
            raise ValueError(f"{v!r} must be a positive number")
        if high > low and v > (high - low) * (1 + 1e-9):  # 0.3 - 0.1 is 0.19999999999999998
            raise ValueError(f"{v!r} is more than the range's width ({high - low:g})")
        return v

    return check


def parse_when(source: str, path: str, raw: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``when: {PARENT: VALUE or [VALUES]}``: routed parent names, each value by the parent's
    rule; whether the parents are searched and can take the values is checked with every
    parameter at hand (conditions.check)."""
    if not isinstance(raw, dict) or not raw:
        raise err(source, path, f"{raw!r} is not a mapping of parameters to their values "
                  "(e.g. 'when: {optimizer: sgd}')")
    out: dict[str, tuple[Any, ...]] = {}
    for key, given in raw.items():
        parent = canonical_key(str(key))
        if parent in out:
            raise err(source, f"{path}.{key}", f"{parent!r} is given twice")
        items = given if isinstance(given, list) else [given]
        if not items:
            raise err(source, f"{path}.{key}", "empty list: give at least one value")
        values = [value(source, f"{path}.{key}", parent, v) for v in items]
        out[parent] = tuple(sorted({repr(v): v for v in values}.values(), key=repr))
    return tuple(sorted(out.items()))
