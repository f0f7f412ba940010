"""``objective:`` (one metric or a list), ``constraints:`` and ``latency:`` of a sweep file.

The first objective is the one trials are scored, curved and (single-objective) pruned on, so
it must be a validation metric (accuracy or loss); the others may be any measured quantity.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweeper.config.values import (
    BATCH_SIZE,
    MAX_LATENCY_MS,
    MAX_LATENCY_PASSES,
    MAX_LOSS,
    MAX_PARAMS,
    MAX_TIMEOUT_S,
    check_float,
    check_int,
    checked,
    err,
    mapping,
)

# Every metric a trial measures, with its default direction (decided here only).
OBJECTIVE_METRICS: dict[str, str] = {
    "accuracy": "maximize",
    "loss": "minimize",
    "n_params": "minimize",
    "fit_time": "minimize",
    "latency_ms": "minimize",  # milliseconds per validation image after training (train/latency.py)
}
SCORE_METRICS = ("accuracy", "loss")  # what a trial's per-epoch curve and pruning can follow
OBJECTIVE_KEYS = {"metric", "direction"}
CONSTRAINT_KEYS = {"max", "min"}
LATENCY_KEYS = {"batch_size", "passes"}
# What a constraint's limit may be, per metric (no metric is negative).
LIMITS = {
    "accuracy": check_float(0.0, 1.0),
    "loss": check_float(0.0, limit=MAX_LOSS),
    "n_params": check_float(0.0, limit=MAX_PARAMS, unit="parameters"),
    "fit_time": check_float(0.0, limit=MAX_TIMEOUT_S, unit="seconds"),
    "latency_ms": check_float(0.0, limit=MAX_LATENCY_MS, unit="ms"),
}
assert set(LIMITS) == set(OBJECTIVE_METRICS)
PASSES = check_int(1, MAX_LATENCY_PASSES, "passes")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str


@dataclass(frozen=True)
class Constraint:
    """``metric`` must stay at or below ``limit`` (``bound`` "max") or at or above it ("min")."""

    metric: str
    bound: str
    limit: float

    def violation(self, value: float) -> float:
        """Optuna's convention: <= 0 is feasible, the amount over the limit otherwise."""
        return value - self.limit if self.bound == "max" else self.limit - value

    def label(self) -> str:
        return f"{self.metric} {'<=' if self.bound == 'max' else '>='} {self.limit:g}"


@dataclass(frozen=True)
class Latency:
    """How ``latency_ms`` is measured: ``passes`` timed passes over the validation images in
    batches of ``batch_size``; the median pass, per image."""

    batch_size: int = 256
    passes: int = 5


DEFAULT_OBJECTIVES = (Objective("accuracy", "maximize"),)


def _one(source: str, path: str, item: Any, first: bool) -> Objective:
    if isinstance(item, str):
        item = {"metric": item}
    item = mapping(source, path, item, OBJECTIVE_KEYS)
    metric = item.get("metric", "accuracy")
    if not isinstance(metric, str) or metric not in OBJECTIVE_METRICS:
        raise err(source, f"{path}.metric", f"{metric!r} is not a known metric (known: {', '.join(OBJECTIVE_METRICS)})")
    if first and metric not in SCORE_METRICS:
        raise err(source, f"{path}.metric", f"{metric!r} cannot come first: the first objective is what trials are "
                  f"scored and curved on ({' or '.join(SCORE_METRICS)}); list {metric} after it")
    direction = item.get("direction", OBJECTIVE_METRICS[metric])
    if direction not in ("maximize", "minimize"):
        raise err(source, f"{path}.direction", f"{direction!r} is not maximize or minimize")
    return Objective(metric, direction)


def parse_objectives(source: str, raw: Any) -> tuple[Objective, ...]:
    """One objective (``accuracy``, ``{metric: loss}``) or a list of them."""
    if raw is None:
        return DEFAULT_OBJECTIVES
    if not isinstance(raw, list):
        return (_one(source, "objective", raw, first=True),)
    if not raw:
        raise err(source, "objective", "an empty list: give at least one metric")
    out = tuple(_one(source, f"objective[{i}]", item, first=i == 0) for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, o in enumerate(out):
        if o.metric in seen:
            raise err(source, f"objective[{i}].metric", f"{o.metric!r} is listed twice")
        seen.add(o.metric)
    return out


def parse_constraints(source: str, raw: Any) -> tuple[Constraint, ...]:
    """``{n_params: {max: 200000}, latency_ms: {max: 2.0}, accuracy: {min: 0.9}}``."""
    out = []
    for metric, bounds in mapping(source, "constraints", raw).items():
        if metric not in OBJECTIVE_METRICS:
            raise err(source, f"constraints.{metric}", f"unknown metric (known: {', '.join(OBJECTIVE_METRICS)})")
        bounds = mapping(source, f"constraints.{metric}", bounds, CONSTRAINT_KEYS)
        if not bounds:
            raise err(source, f"constraints.{metric}", "give 'max: VALUE' and/or 'min: VALUE'")
        for bound in ("max", "min"):
            if bound in bounds:
                out.append(Constraint(metric, bound, checked(source, f"constraints.{metric}.{bound}", LIMITS[metric],
                                                             bounds[bound])))
    return tuple(out)


def parse_latency(source: str, raw: Any) -> Latency:
    options = mapping(source, "latency", raw, LATENCY_KEYS)
    default = Latency()
    return Latency(
        batch_size=checked(source, "latency.batch_size", BATCH_SIZE, options.get("batch_size", default.batch_size)),
        passes=checked(source, "latency.passes", PASSES, options.get("passes", default.passes)),
    )
