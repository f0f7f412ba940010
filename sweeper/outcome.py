"""What a finished trial tells the study, decided once for the one-at-a-time loop and for packs:
its objective values (constraint values stored first) and the attrs stored with it."""

from __future__ import annotations

from typing import Any

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
