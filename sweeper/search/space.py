"""Search space: spec params -> Optuna distributions, grid points, and a trial's full params.

Keys are scikeras routed names, so ``trial_params`` feeds ``KerasClassifier.set_params`` as is.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from sweeper.config import conditions
from sweeper.config.spec import ParamSpec, SweepSpec


def _numeric(values: tuple[Any, ...]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def distribution(p: ParamSpec, lists_as_ranges: bool = False) -> BaseDistribution:
    """The Optuna distribution of a parameter. A grid stores a numeric list as the range it spans
    (``lists_as_ranges``): Optuna fixes a categorical parameter's choices for the life of a study,
    a range may widen, so a grid of numbers can grow by new values."""
    if p.values is not None:
        if lists_as_ranges and _numeric(p.values):
            if all(isinstance(v, int) for v in p.values):
                return IntDistribution(int(min(p.values)), int(max(p.values)))
            return FloatDistribution(float(min(p.values)), float(max(p.values)))
        return CategoricalDistribution(list(p.values))
    if p.is_int:
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)


def distributions(spec: SweepSpec, lists_as_ranges: bool = False) -> dict[str, BaseDistribution]:
    return {name: distribution(p, lists_as_ranges) for name, p in spec.params.items()}


def grid_points(spec: SweepSpec, limit: int | None = None) -> list[dict[str, Any]]:
    """The grid's points in a stable order (the order of the file's lists), the first ``limit``
    only when given (without enumerating the rest). With conditions, a point holds only the
    parameters that exist at it (config/conditions.py)."""
    if conditions.has_conditions(spec.params):
        return list(itertools.islice(conditions.grid_points(spec.params), limit))
    names = list(spec.params)
    values = [spec.params[n].values or () for n in names]
    return [dict(zip(names, combo)) for combo in itertools.islice(itertools.product(*values), limit)]


def suggest(trial: optuna.Trial, dists: dict[str, BaseDistribution],
            params: dict[str, ParamSpec] | None = None) -> dict[str, Any]:
    """Ask the trial for every searched parameter (its fixed values when it was queued). With
    ``params`` (the sweep's, when any has a condition), define-by-run: parents first, and a
    parameter whose condition fails at the values drawn so far is never asked for."""
    out: dict[str, Any] = {}
    names = conditions.order(params) if params and conditions.has_conditions(params) else list(dists)
    for name in names:
        d = dists[name]
        if params and not conditions.holds(params[name].when, out):
            continue
        if isinstance(d, CategoricalDistribution):
            out[name] = trial.suggest_categorical(name, list(d.choices))
        elif isinstance(d, IntDistribution):
            out[name] = trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        else:
            out[name] = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    return out


def is_discrete(spec: SweepSpec) -> bool:
    """Every searched parameter takes finitely many values (lists, int or stepped ranges), so a
    sampler can propose the same point twice."""
    return all(p.values is not None or p.is_int or p.step for p in spec.params.values())


def full_params(spec: SweepSpec, searched: dict[str, Any]) -> dict[str, Any]:
    """Fixed training settings overlaid with the searched values."""
    return {**spec.fixed, **searched}


def params_key(params: dict[str, Any]) -> str:
    """A stable identity for a parameter set (grid bookkeeping, duplicate checks)."""
    return json.dumps(params, sort_keys=True, default=str)


def without_epochs(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k != "epochs"}


def but_epochs_key(params: dict[str, Any]) -> str:
    """The identity of a configuration apart from its epochs: points with the same one share a
    trial seed (seed rule 2), so a pack trains them once."""
    return params_key(without_epochs(params))


def trial_seed(spec: SweepSpec, params: dict[str, Any]) -> int:
    """Seed of a trial, from the sweep seed and its params only: the same config gets the same
    initial weights whichever worker, order or restart runs it. Under ``spec.seed_rule`` 2 the
    epochs are left out: trials that differ only in epochs share initial weights and data order.
    Seeded the scikeras way, every trial has the sweep seed, as every clone of a
    ``KerasClassifier(random_state=seed)`` has."""
    if spec.seeds_as_scikeras:
        return spec.seed
    if spec.seed_rule >= 2:
        params = without_epochs(params)
    digest = hashlib.sha256(f"{spec.seed}|{params_key(params)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
