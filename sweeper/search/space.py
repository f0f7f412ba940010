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

from sweeper.config.spec import ParamSpec, SweepSpec


def distribution(p: ParamSpec) -> BaseDistribution:
    if p.values is not None:
        return CategoricalDistribution(list(p.values))
    if p.is_int:
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=int(p.step or 1))
    return FloatDistribution(float(p.low), float(p.high), log=p.log, step=p.step)


def distributions(spec: SweepSpec) -> dict[str, BaseDistribution]:
    return {name: distribution(p) for name, p in spec.params.items()}


def grid_points(spec: SweepSpec, limit: int | None = None) -> list[dict[str, Any]]:
    """The grid's points in a stable order (the order of the file's lists), the first ``limit``
    only when given (without enumerating the rest)."""
    names = list(spec.params)
    values = [spec.params[n].values or () for n in names]
    return [dict(zip(names, combo)) for combo in itertools.islice(itertools.product(*values), limit)]


def suggest(trial: optuna.Trial, spec: SweepSpec) -> dict[str, Any]:
    """Ask the trial for every searched parameter (fixed values when the trial was enqueued)."""
    out: dict[str, Any] = {}
    for name, p in spec.params.items():
        if p.values is not None:
            out[name] = trial.suggest_categorical(name, list(p.values))
        elif p.is_int:
            out[name] = trial.suggest_int(name, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            out[name] = trial.suggest_float(name, float(p.low), float(p.high), step=p.step, log=p.log)
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


def trial_seed(spec: SweepSpec, params: dict[str, Any]) -> int:
    """Seed of a trial, from the sweep seed and its params only: the same config gets the same
    initial weights whichever worker, order or restart runs it."""
    digest = hashlib.sha256(f"{spec.seed}|{params_key(params)}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF
