"""What a trial tells the study, decided once for every evaluator: its per-epoch reports
(pruning), its objective values (constraint values stored first, where Optuna's samplers read
them) and the attrs stored with it. The search only computes values; this module writes them."""

from __future__ import annotations

from typing import Any, Sequence

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
from sweeper.store.pareto import constraint_values


def reports(spec: SweepSpec) -> bool:
    """Whether trials report per-epoch values (Optuna's ``trial.report`` takes one objective), and
    so can be pruned. Every evaluator is handed the hook: a trial of one fit reports each epoch; a
    trial of several fits (k-fold, repeats) reports each epoch's mean over its fits once every fit
    reached it (train/trial.py: during its last fit, the earlier fits' curves known;
    train/fused/trials.py: its fits train at once); a trial function reports what it calls it with."""
    return not spec.multi_objective


class PruningHook:
    """The per-epoch hook of a trial: report, and stop it when the pruner says so. Remembers the
    epochs it reported (``report_curve`` reports the others once the trial is done)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial
        self.reported: set[int] = set()

    def __call__(self, epoch: int, value: float) -> None:
        if epoch in self.reported:
            return
        self.trial.report(value, epoch)
        self.reported.add(epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch + 1} ({value:.4f})")


def pruning_hook(spec: SweepSpec, trial: optuna.Trial) -> PruningHook | None:
    return PruningHook(trial) if reports(spec) else None


def report_curve(spec: SweepSpec, trial: optuna.Trial, curve: list[float], hook: PruningHook | None) -> None:
    """A completed trial's curve (the mean over its fits), for the epochs its hook did not report
    while it trained (a trial function that did not call it)."""
    if reports(spec):
        for epoch, value in enumerate(curve):
            if hook is None or epoch not in hook.reported:
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
    store_constraints(study, trial, constraint_values(twin))
    return list(twin.values)
