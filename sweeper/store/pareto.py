"""Several objectives: each trial's values, its constraint status, the Pareto front and ranks.
Decided here once; show, export, best, the report and the progress counts read it from here.

A trial is on the front when it is completed, not a sampler's repeat of a point (its twin
counts), feasible (every stored constraint value <= 0, Optuna's convention) and no other such
trial is at least as good on every objective and better on one.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from sweeper.config.spec import SweepSpec
from sweeper.store import optuna_internals as oi
from sweeper.store.keys import DUPLICATE_OF_ATTR


def first_value(t: FrozenTrial) -> float | None:
    """The first objective's value (``t.value`` raises for a multi-objective trial)."""
    values = t.values
    return values[0] if values else None


def constraint_values(t: FrozenTrial) -> list[float] | None:
    """The stored constraint values (None: the trial has none)."""
    stored = t.system_attrs.get(oi.constraints_key())
    return None if stored is None else [float(v) for v in stored]


def _stored(n: int, trial: FrozenTrial) -> list[float]:
    # A pruned trial (single objective) has no constraint values: counted as feasible.
    values = constraint_values(trial)
    return values if values is not None else [0.0] * n


def constraints_func(spec: SweepSpec) -> Callable[[FrozenTrial], Sequence[float]] | None:
    """For the samplers that take one (TPE, NSGA-II, GP): the constraint values the worker stored
    on a trial before telling it (None: the sweep has no constraints). Given to
    ``SamplerStrategy.sampler`` by whoever makes a study's sampler (store/studies.py, worker)."""
    return functools.partial(_stored, len(spec.constraints)) if spec.constraints else None


def is_feasible(t: FrozenTrial) -> bool | None:
    """True/False when constraint values are stored, None when there are none."""
    stored = constraint_values(t)
    return None if stored is None else all(v <= 0.0 for v in stored)


def candidates(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Completed trials with finite values, repeats of a point left out (their twin counts)."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.values
            and all(math.isfinite(v) for v in t.values) and t.user_attrs.get(DUPLICATE_OF_ATTR) is None]


def _losses(trials: Sequence[FrozenTrial], directions: Sequence[str]) -> np.ndarray:
    sign = np.array([-1.0 if d == "maximize" else 1.0 for d in directions])
    return np.array([t.values for t in trials], dtype=float).reshape(len(trials), len(directions)) * sign


def _ranks(losses: np.ndarray) -> np.ndarray:
    """Non-dominated sorting: 1 for the front, 2 for the front of the rest, ... (O(n^2))."""
    n = len(losses)
    if n == 0:
        return np.zeros(0, dtype=int)
    le = (losses[:, None, :] <= losses[None, :, :]).all(axis=2)
    lt = (losses[:, None, :] < losses[None, :, :]).any(axis=2)
    dominates = le & lt  # [i, j]: i dominates j
    count = dominates.sum(axis=0)  # how many trials dominate each one
    rank = np.zeros(n, dtype=int)
    level = 1
    current = np.flatnonzero(count == 0)
    while len(current):
        rank[current] = level
        count = count - dominates[current].sum(axis=0)
        count[rank > 0] = -1
        current = np.flatnonzero(count == 0)
        level += 1
    return rank


def pareto_ranks(trials: Sequence[FrozenTrial], directions: Sequence[str]) -> dict[int, int]:
    """Pareto rank by trial number (1 = the front) of the feasible candidates; infeasible,
    unfinished and repeated trials have no rank."""
    pool = [t for t in candidates(trials) if is_feasible(t) is not False]
    ranks = _ranks(_losses(pool, directions))
    return {t.number: int(r) for t, r in zip(pool, ranks)}


def pareto_front(trials: Sequence[FrozenTrial], directions: Sequence[str]) -> list[FrozenTrial]:
    """The feasible non-dominated trials, in trial order."""
    ranks = pareto_ranks(trials, directions)
    return [t for t in trials if ranks.get(t.number) == 1]
