"""What a trial tells the study, decided once for the one-at-a-time loop and for packs: its
per-epoch reports (pruning), its objective values (constraint values stored first) and the attrs
stored with it."""

from __future__ import annotations

from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial

from sweeper.config.spec import SweepSpec
from sweeper.search import objectives
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
    values = objectives.told(study, trial, spec, result)
    if not hasattr(result, "as_attrs"):
        return values, {}
    metrics = result.as_attrs()
    return values, {METRICS_ATTR: metrics, **scalar_attrs(metrics)}


def duplicate(study: optuna.Study, trial: optuna.Trial, twin: FrozenTrial) -> tuple[list[float], dict[str, Any]]:
    """A repeat of a completed point: that point's values and metrics, linked to it."""
    attrs = {k: v for k, v in twin.user_attrs.items() if k == METRICS_ATTR or k in SCALAR_METRICS}
    return objectives.told_twin(study, trial, twin), {**attrs, DUPLICATE_OF_ATTR: twin.number}
