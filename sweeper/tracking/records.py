"""A study -> one plain record per trial for the experiment trackers (TensorBoard's HParams
dashboard, MLflow): its params, what became of it, its final metrics by name and its per-epoch
validation curve. The exporters (report/tensorboard_export.py, report/mlflow_export.py) and the
live sinks (tracking/live.py) take these; read from the store alone, so a worker may build one."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import optuna

from sweeper.config.spec import SweepSpec
from sweeper.store import results
from sweeper.store.keys import KEPT_ATTR, METRICS_ATTR, REMOVED_PREFIX, SCALAR_METRICS
from sweeper.store.progress import requeued_numbers, study_outcomes

# Optuna's state of a trial -> the tracker's word for how its run ended (MLflow's run statuses).
RUN_STATUS = {"complete": "FINISHED", "pruned": "KILLED", "fail": "FAILED", "running": "RUNNING", "waiting": "SCHEDULED"}


@dataclass
class TrialRecord:
    number: int
    state: str  # Optuna's state, lower case: complete, pruned, fail, running, waiting
    outcome: str  # what became of it, in store/progress.py's words (complete, duplicate, failed, ...)
    params: dict[str, Any]
    metrics: dict[str, float]  # every objective and stored metric by name (finite numbers only)
    curve: list[float]  # the per-epoch validation curve (the first objective's, epoch 0 first)
    start_s: float | None = None  # when it started, seconds since the epoch
    end_s: float | None = None
    kept: bool = False  # its trained models are in the study's artifact store
    reason: str | None = None  # why it failed or was interrupted, its first line

    @property
    def status(self) -> str:
        return RUN_STATUS.get(self.state, "FAILED")


def metric_names(spec: SweepSpec) -> list[str]:
    """Every name a record's metrics may carry: the objectives first, then the stored metrics."""
    names = list(spec.objective_names)
    for name in ("accuracy", *SCALAR_METRICS, "latency_ms"):
        if name not in names:
            names.append(name)
    return names


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _rows(study: optuna.Study, spec: SweepSpec, trials: list[optuna.trial.FrozenTrial]) -> list[dict[str, Any]]:
    """What a record needs of each trial, as the reports read it (report/collect.py's rows):
    state, first objective's value, values by objective, curve, outcome and its reason."""
    requeued = requeued_numbers(trials)
    _, found = study_outcomes(study, spec)
    rows = []
    for t, o in zip(trials, found):
        flat = results.trial_row(t, requeued)
        stored = t.user_attrs.get(METRICS_ATTR) or {}
        curve = [float(v) for _, v in sorted(t.intermediate_values.items())]
        if not curve and isinstance(stored.get("curve"), list):
            curve = [float(v) for v in stored["curve"]]
        complete = flat["state"] == "complete" and t.values
        rows.append({"number": t.number, "state": flat["state"], "value": flat["mean_test_score"], "curve": curve,
                     "values": dict(zip(spec.objective_names, t.values)) if complete else {},
                     "outcome": o.kind, "reason": o.reason})
    return rows


def records(study: optuna.Study, spec: SweepSpec) -> list[TrialRecord]:
    """One record per trial of the study, in trial order."""
    trials = study.get_trials(deepcopy=False)
    rows = _rows(study, spec, trials)
    by_number = {t.number: t for t in trials}
    removed = study.user_attrs
    out = []
    for row in rows:
        t = by_number[row["number"]]
        stored = t.user_attrs.get(METRICS_ATTR) or {}
        metrics: dict[str, float] = {}
        values = row.get("values") or {}
        if not values and row["state"] == "complete" and _finite(row["value"]):
            values = {spec.metric: row["value"]}
        for name, v in values.items():
            if _finite(v):
                metrics[name] = float(v)
        for name in (*SCALAR_METRICS, "latency_ms"):  # as stored (not rounded as the dashboard's attrs)
            if _finite(stored.get(name)):
                metrics.setdefault(name, float(stored[name]))
        if "accuracy" not in metrics and row["state"] == "complete" and spec.metric == "accuracy" \
                and _finite(row["value"]):
            metrics["accuracy"] = float(row["value"])
        kept = bool((t.user_attrs.get(KEPT_ATTR) or {}).get("fits")) and REMOVED_PREFIX + str(t.number) not in removed
        out.append(TrialRecord(
            number=t.number, state=t.state.name.lower(), outcome=row["outcome"] or row["state"],
            params=dict(t.params), metrics=metrics, curve=[float(v) for v in row["curve"]],
            start_s=t.datetime_start.timestamp() if t.datetime_start else None,
            end_s=t.datetime_complete.timestamp() if t.datetime_complete else None,
            kept=kept, reason=(str(row.get("reason") or "").splitlines() or [None])[0],
        ))
    return out


def record(study: optuna.Study, spec: SweepSpec, number: int) -> TrialRecord | None:
    """Trial ``number``'s record (its outcome is read against the whole study, as the export's)."""
    return next((r for r in records(study, spec) if r.number == number), None)
