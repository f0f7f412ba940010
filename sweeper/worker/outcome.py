"""What a trial tells the study, decided once for every evaluator: its per-epoch reports
(pruning), its objective values (constraint values stored first, where Optuna's samplers read
them) and the attrs stored with it. The search only computes values; this module writes them."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import optuna
from optuna.trial import FrozenTrial

from sweeper.config.spec import SweepSpec
from sweeper.search import objectives
from sweeper.store import optuna_internals as oi
from sweeper.store.keys import (
    DUPLICATE_OF_ATTR,
    METRICS_ATTR,
    SCALAR_METRICS,
    scalar_attrs,
)


def reports(spec: SweepSpec) -> bool:
    """Whether trials report per-epoch values (Optuna's ``trial.report`` takes one objective)."""
    return not spec.multi_objective


def live(spec: SweepSpec) -> bool:
    """Whether they report while training (pruning): only a trial with one fit can."""
    return reports(spec) and spec.kfold is None and spec.repeats == 1


def pruning_hook(trial: optuna.Trial) -> Callable[[int, float], None]:
    """The per-epoch hook of a live trial: report, and stop it when the pruner says so."""

    def on_epoch(epoch: int, value: float) -> None:
        trial.report(value, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} ({value:.4f})")

    return on_epoch


def report_curve(spec: SweepSpec, trial: optuna.Trial, curve: list[float]) -> None:
    """A trial that could not report live (k-fold, repeats) reports its mean curve afterwards."""
    if reports(spec) and not live(spec):
        for epoch, value in enumerate(curve):
            trial.report(value, epoch)


def completed(study: optuna.Study, trial: optuna.Trial, spec: SweepSpec, result: Any) -> tuple[list[float], dict[str, Any]]:
    """A trained trial: its values, and its metrics (the JSON blob, and its scalars as attrs of
    their own so optuna-dashboard can sort by them). ``result``: a TrialResult or plain numbers."""
    values = _told(study, trial, spec, result)
    if not hasattr(result, "as_attrs"):
        return values, {}
    metrics = result.as_attrs()
    return values, {METRICS_ATTR: metrics, **scalar_attrs(metrics)}


def duplicate(study: optuna.Study, trial: optuna.Trial, twin: FrozenTrial) -> tuple[list[float], dict[str, Any]]:
    """A repeat of a completed point: that point's values and metrics, linked to it."""
    attrs = {k: v for k, v in twin.user_attrs.items() if k == METRICS_ATTR or k in SCALAR_METRICS}
    return _told_twin(study, trial, twin), {**attrs, DUPLICATE_OF_ATTR: twin.number}


def store_constraints(study: optuna.Study, trial: optuna.Trial, values: Sequence[float] | None) -> None:
    """Written before the tell, where Optuna's samplers read them (``trial.constraints``)."""
    if values is not None:
        oi.storage_of(study).set_trial_system_attr(oi.trial_id(trial), oi.constraints_key(), list(values))


def _told(study: optuna.Study, trial: optuna.Trial, spec: SweepSpec, result: Any) -> list[float]:
    """The values to tell for ``result`` (a TrialResult or a trial function's numbers), its
    constraint values stored on the trial first."""
    values = objectives.objective_values(spec, result)
    store_constraints(study, trial, objectives.constraint_values(spec, result))
    return values


def _told_twin(study: optuna.Study, trial: optuna.Trial, twin: FrozenTrial) -> list[float]:
    """A repeat of a completed point: that point's values and constraint values."""
    values, constraints = objectives.twin_outcome(twin)
    store_constraints(study, trial, constraints)
    return values
