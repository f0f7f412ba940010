"""Search strategies: they only propose candidates, never train or store.

A grid queues every point in the study once (workers then claim queued trials atomically); a
sampler strategy asks its Optuna sampler for each new trial. The loop, progress counting and
study creation ask the strategy instead of checking the method name.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from sweeper.config import names
from sweeper.config.sections import Pruner
from sweeper.config.spec import SweepSpec
from sweeper.search import space

ConstraintsFunc = Callable[[FrozenTrial], Sequence[float]]


def _seed(spec: SweepSpec, salt: int) -> int:
    """``salt`` varies the seed on restarts and across workers, so a seeded sampler never
    replays the params it proposed before (optuna#3255)."""
    return (spec.seed + 1_000_003 * salt) % (2**32)


@dataclass(frozen=True)
class GridStrategy:
    """Every point queued once and claimed atomically. Optuna's GridSampler picks points itself
    and repeats them under parallel workers or restarts (optuna#2039, #4627, #5489): not used."""

    spec: SweepSpec
    queues_points = True  # the budget is the queued points; nothing is ever asked of a sampler
    counts_points = True  # progress counts each point once, however many trials it took

    def sampler(self, salt: int = 0, constraints_func: ConstraintsFunc | None = None) -> optuna.samplers.BaseSampler:
        return optuna.samplers.RandomSampler(seed=_seed(self.spec, salt))  # never consulted

    def points(self) -> list[dict[str, Any]]:
        return space.grid_points(self.spec, self.spec.budget)

    def distributions(self) -> dict[str, BaseDistribution]:
        return space.distributions(self.spec, lists_as_ranges=True)  # a grid of numbers may grow

    def may_repeat(self) -> bool:
        return False

    def can_ask(self, finished: int, in_flight: int, budget: int | None) -> bool:
        return False


@dataclass(frozen=True)
class SamplerStrategy:
    """New trials come from the method's Optuna sampler, seeded from the sweep seed."""

    spec: SweepSpec
    queues_points = False
    counts_points = False

    def sampler(self, salt: int = 0, constraints_func: ConstraintsFunc | None = None) -> optuna.samplers.BaseSampler:
        """The method's sampler. ``constraints_func``: a trial's stored constraint values, which
        the sampler reads (store/pareto.py ``constraints_func``; the search does not read the
        store), required when the sweep has constraints."""
        cls = getattr(optuna.samplers, names.SAMPLERS[self.spec.method])
        options = dict(self.spec.sampler)
        if self.spec.method == "cmaes":
            options.setdefault("warn_independent_sampling", False)  # categorical params go to random
        if self.spec.constraints and constraints_func is None:
            raise ValueError("a sweep with constraints needs the stored constraint values (constraints_func)")
        if constraints_func is not None and "constraints_func" in inspect.signature(cls).parameters:
            options["constraints_func"] = constraints_func  # TPE, NSGA-II, GP steer away from infeasible points
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # constraints_func
            return cls(seed=_seed(self.spec, salt), **options)

    def points(self) -> list[dict[str, Any]]:
        return []

    def distributions(self) -> dict[str, BaseDistribution]:
        return space.distributions(self.spec)  # lists are categories to a sampler

    def may_repeat(self) -> bool:
        """On a discrete space a sampler proposes points it tried before (TPE does, often)."""
        return space.is_discrete(self.spec)

    def can_ask(self, finished: int, in_flight: int, budget: int | None) -> bool:
        return budget is None or finished + in_flight < budget


Strategy = GridStrategy | SamplerStrategy


def strategy_for(spec: SweepSpec) -> Strategy:
    return GridStrategy(spec) if spec.method == "grid" else SamplerStrategy(spec)


def make_pruner(p: Pruner) -> optuna.pruners.BasePruner:
    """No pruning unless the sweep file asks for it: a grid must score every point in full."""
    cls = {
        "none": optuna.pruners.NopPruner,
        "median": optuna.pruners.MedianPruner,
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner,
        "hyperband": optuna.pruners.HyperbandPruner,
    }[p.kind]
    return cls(**p.options)
