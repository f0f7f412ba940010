"""Searched and fixed parameters: keys are scikeras routed names (``optimizer__learning_rate``,
``model__dropout``, ``batch_size``), aliases normalised, values checked per key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from sweeper.config import names
from sweeper.config.values import (
    as_number,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_scalar,
    checked,
    err,
)


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

    @property
    def is_grid(self) -> bool:
        return self.values is not None




RULES: dict[str, Callable[[Any], Any]] = {
    "optimizer": check_choice(names.OPTIMIZERS, "optimizer"),
    "optimizer__learning_rate": check_float(0.0, None, lo_open=True),
    "optimizer__momentum": check_float(0.0, 1.0, hi_open=True),
    "optimizer__nesterov": check_bool,
    "optimizer__centered": check_bool,
    "batch_size": check_int(1),
    "epochs": check_int(1),
    "model__dropout": check_float(0.0, 1.0, hi_open=True),
    "model__batchnorm": check_bool,
    "model__activation": check_choice(names.ACTIVATIONS, "activation"),
    "model__units": check_int(1),
    "model__kernel_initializer": check_choice(names.INITIALIZERS, "kernel initializer"),
    "model__l2": check_float(0.0, None),
}
INT_PARAMS = {k for k, rule in RULES.items() if getattr(rule, "__qualname__", "").startswith("check_int")}


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



def value(source: str, path: str, key: str, v: Any) -> Any:
    return checked(source, path, RULES.get(key, check_scalar), v)


def parse_param(source: str, path: str, key: str, raw: Any) -> ParamSpec:
    if isinstance(raw, list):
        if not raw:
            raise err(source, path, "empty list: give at least one value")
        values = tuple(value(source, f"{path}[{i}]", key, v) for i, v in enumerate(raw))
        if len(set(map(repr, values))) != len(values):
            raise err(source, path, f"{raw!r} has duplicate values")
        return ParamSpec(key, values=values)
    if isinstance(raw, dict):
        if "choices" in raw:
            if set(raw) != {"choices"}:
                raise err(source, path, "a 'choices' parameter takes no other keys")
            return parse_param(source, f"{path}.choices", key, raw["choices"])
        extra = set(raw) - {"low", "high", "log", "step", "type"}
        if extra:
            raise err(source, f"{path}.{sorted(extra)[0]}", "unknown key (a range takes low, high, log, step, type)")
        for bound in ("low", "high"):
            if bound not in raw:
                raise err(source, path, f"a range needs '{bound}' (or give a list of values)")
        low = value(source, f"{path}.low", key, raw["low"])
        high = value(source, f"{path}.high", key, raw["high"])
        if not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in (low, high)):
            raise err(source, path, "a range needs numeric low/high; use a list for categories")
        if low > high:
            raise err(source, f"{path}.low", f"{low!r} is greater than high {high!r}")
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise err(source, f"{path}.log", f"{log!r} is not true/false")
        if log and low <= 0:
            raise err(source, f"{path}.low", f"{low!r} must be > 0 on a log scale")
        kind = raw.get("type", "int" if key in INT_PARAMS else "float")
        if kind not in ("int", "float"):
            raise err(source, f"{path}.type", f"{kind!r} is not int or float")
        step = raw.get("step")
        if step is not None:
            step = as_number(step)
            if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
                raise err(source, f"{path}.step", f"{step!r} must be a positive number")
            if log:
                raise err(source, f"{path}.step", "step cannot be combined with log")
        is_int = kind == "int"
        if is_int:
            low, high = int(low), int(high)
        return ParamSpec(key, low=low, high=high, log=log, step=step, is_int=is_int)
    return ParamSpec(key, values=(value(source, path, key, raw),))


