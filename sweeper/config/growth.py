"""Growing a study: which changes to a sweep definition keep its stored results comparable.

A study may be run again with a definition that only widens the search: new values in a grid
list, a wider range, a larger budget, another timeout, another sampler (between sampling
methods), sampler options, pruner or stop rule (``stop`` decides when the search ends, never
what a trial computes); it may also keep other trained models (``artifacts``) or log its trials
elsewhere (``tracking``). Anything that changes how a trial trains or is scored (data, model,
fixed settings, validation, objective, seed, seeding, callbacks, augmentation, compute) would make
old and new results incomparable, and is refused with the key and both values.
"""

from __future__ import annotations

from dataclasses import is_dataclass
from typing import Any

from sweeper.config.params import ParamSpec
from sweeper.config.spec import SweepSpec

# Fields that decide what one trial computes, by the sweep-file key that sets them.
FIXED_FIELDS = {
    "data": "data", "model": "model", "fixed": "training", "metric": "objective.metric",
    "direction": "objective.direction", "holdout": "validation.holdout", "kfold": "validation.kfold",
    "repeats": "validation.repeats", "seed": "seed", "seeding": "seeding", "callbacks": "callbacks",
    "augmentation": "augmentation", "compute": "compute", "trial_function": "trial_function",
    "objectives": "objective", "constraints": "constraints", "latency": "latency",
}


class Refused(Exception):
    """The change named in the message would make stored results incomparable."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _param_widens(key: str, old: ParamSpec, new: ParamSpec) -> None:
    where = f"params.{key}"
    if old.when != new.when:  # which trials have the parameter would change under the stored ones
        shown = [_show({k: list(v) for k, v in p.when}) if p.when else "none" for p in (old, new)]
        raise Refused(f"{where}.when: the condition changed from {shown[0]} to {shown[1]}; stored results would "
                      "not be comparable (give the sweep a new name)")
    if old.is_grid != new.is_grid:
        raise Refused(f"{where}: changed from a {'list' if old.is_grid else 'range'} to a "
                      f"{'list' if new.is_grid else 'range'}")
    if old.is_grid:
        dropped = [v for v in old.values or () if v not in (new.values or ())]
        if dropped:
            raise Refused(f"{where}: values {_show(dropped)} were removed (a study may only grow: add values)")
        return
    if (old.log, old.step, old.is_int) != (new.log, new.step, new.is_int):
        raise Refused(f"{where}: the range's log/step/type changed")
    if new.low is None or old.low is None or new.high is None or old.high is None \
            or new.low > old.low or new.high < old.high:
        raise Refused(f"{where}: range [{old.low}, {old.high}] -> [{new.low}, {new.high}] does not contain the old one")


def first_difference(old: SweepSpec, new: SweepSpec) -> tuple[str, str, str] | None:
    """The first of the keys that decide what one trial computes on which ``old`` and ``new``
    differ: (key, old value, new value) as shown (None: their results are comparable; a warm
    start, store/warm.py, asks this too)."""
    for field, key in FIXED_FIELDS.items():
        a, b = getattr(old, field), getattr(new, field)
        if is_dataclass(a) and type(a) is type(b) and a != b:  # data, callbacks, ...: name the setting
            a, b = vars(a), vars(b)
        if isinstance(a, dict) and isinstance(b, dict) and a != b:  # training: name the setting
            inner = next(k for k in sorted(set(a) | set(b), key=str) if a.get(k) != b.get(k))
            key, a, b = f"{key}.{inner}", a.get(inner), b.get(inner)
        if a != b:
            return key, _show(a), _show(b)
    return None


def check_growth(old: SweepSpec, new: SweepSpec) -> list[str]:
    """What grows from ``old`` to ``new`` (one line each, empty when nothing changed); raises
    ``Refused`` naming the first change that is not a widening."""
    differs = first_difference(old, new)
    if differs:
        key, a, b = differs
        raise Refused(f"{key}: changed from {a} to {b}; stored results would not be comparable "
                      "(give the sweep a new name)")
    if old.warm_start != new.warm_start:
        raise Refused(f"warm_start: changed from {_show(old.warm_start)} to {_show(new.warm_start)}; a warm start "
                      "is made once, with the study (give the sweep a new name)")
    if set(old.params) != set(new.params):
        added, removed = sorted(set(new.params) - set(old.params)), sorted(set(old.params) - set(new.params))
        raise Refused(f"params: {'added ' + ', '.join(added) if added else 'removed ' + ', '.join(removed)}; "
                      "stored trials have no value for it (give the sweep a new name)")
    if (old.method == "grid") != (new.method == "grid"):
        raise Refused(f"method: changed from {old.method!r} to {new.method!r} (grid and sampling budgets differ)")
    changes = []
    for key, p in new.params.items():
        _param_widens(key, old.params[key], p)
        if p != old.params[key]:
            changes.append(f"params.{key} widened")
    if old.budget is not None and (new.budget is None or new.budget > old.budget):
        changes.append(f"budget {old.budget} -> {new.budget or 'unbounded'}")
    elif new.budget is not None and old.budget is not None and new.budget < old.budget:
        raise Refused(f"trials: {new.budget} is below the study's budget {old.budget} (a study may only grow)")
    for field in ("method", "timeout", "sampler", "pruner", "stop", "max_worker_deaths", "description", "artifacts",
                  "tracking"):
        if getattr(old, field) != getattr(new, field):
            changes.append(f"{field} {_show(getattr(old, field))} -> {_show(getattr(new, field))}")
    return changes
