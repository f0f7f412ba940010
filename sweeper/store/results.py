"""Flat rows from a study, the shape scikit-learn's ``cv_results_`` made familiar:
``param_*`` columns, ``mean_test_score``, ``std_test_score``, ``mean_fit_time`` and the rest.
Every reader (show, export, report) goes through here."""

from __future__ import annotations

import json
from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.store.keys import (
    DUPLICATE_OF_ATTR,
    ERROR_ATTR,
    METRICS_ATTR,
    PLACEMENT_ATTR,
    RETRY_OF_ATTR,
    WARM_ATTR,
)
from sweeper.store.pareto import first_value, is_feasible, pareto_ranks
from sweeper.store.placement import placement_label
from sweeper.store.progress import requeued_numbers

METRIC_COLUMNS = ("std_test_score", "val_loss", "train_accuracy", "fit_time", "epochs_run", "n_params")


def objective_names(study: optuna.Study) -> list[str]:
    """The study's objectives by name (set when sweeper made it; Optuna's placeholders else)."""
    return list(study.metric_names or [f"objective_{i}" for i in range(len(study.directions))])


def trial_row(t: FrozenTrial, requeued: set[int] = frozenset(), objectives: Sequence[str] = ()) -> dict[str, Any]:
    """``objectives``: the study's objective names; with several, one ``value_NAME`` and one
    ``std_NAME`` column each."""
    metrics = t.user_attrs.get(METRICS_ATTR) or {}
    row: dict[str, Any] = {"number": t.number, "state": t.state.name.lower()}
    for name, value in t.params.items():
        row[f"param_{name}"] = value
    row["mean_test_score"] = first_value(t) if t.state == TrialState.COMPLETE else None
    if len(objectives) > 1:
        stats = metrics.get("stats") or {}
        values = t.values if t.state == TrialState.COMPLETE and t.values else [None] * len(objectives)
        for name, value in zip(objectives, values):
            row[f"value_{name}"] = value
            row[f"std_{name}"] = (stats.get(name) or {}).get("std")
    feasible = is_feasible(t)
    if feasible is not None:
        row["feasible"] = feasible
    row["std_test_score"] = metrics.get("std_test_score")
    row["mean_fit_time"] = metrics.get("fit_time")
    for key in ("val_loss", "train_accuracy", "epochs_run", "n_params"):
        row[key] = metrics.get(key)
    if t.state == TrialState.PRUNED and t.intermediate_values:
        row["last_intermediate"] = t.intermediate_values[max(t.intermediate_values)]
    row["duration_s"] = t.duration.total_seconds() if t.duration else None
    row["error"] = t.user_attrs.get(ERROR_ATTR)
    row["retried"] = t.number in requeued
    row["retry_of"] = t.user_attrs.get(RETRY_OF_ATTR)
    row["duplicate_of"] = t.user_attrs.get(DUPLICATE_OF_ATTR)
    if PLACEMENT_ATTR in t.user_attrs:  # where it ran
        row["placement"] = placement_label(t.user_attrs[PLACEMENT_ATTR])
    if WARM_ATTR in t.user_attrs:  # an earlier study's or file's trial the study started with
        row["warm_start"] = json.dumps(t.user_attrs[WARM_ATTR], sort_keys=True)
    return row


def rows(study: optuna.Study, states: tuple[TrialState, ...] | None = None) -> list[dict[str, Any]]:
    trials = study.get_trials(deepcopy=False)
    requeued = requeued_numbers(trials)
    names = objective_names(study)
    out = [trial_row(t, requeued, names) for t in trials if states is None or t.state in states]
    _add_pareto(study, trials, out)
    return out


def _add_pareto(study: optuna.Study, trials: Sequence[FrozenTrial], out: list[dict[str, Any]]) -> None:
    """With several objectives: each row's Pareto rank (1 = the front; none for infeasible,
    unfinished or repeated trials) and whether it is on the front."""
    if len(study.directions) < 2:
        return
    ranks = pareto_ranks(trials, [d.name.lower() for d in study.directions])
    for r in out:
        r["pareto_rank"] = ranks.get(r["number"])
        r["pareto"] = ranks.get(r["number"]) == 1


def top(study: optuna.Study, k: int, maximize: bool) -> list[dict[str, Any]]:
    done = [r for r in rows(study, (TrialState.COMPLETE,)) if r["mean_test_score"] is not None]
    done.sort(key=lambda r: r["mean_test_score"], reverse=maximize)
    return done[:k]


def export_records(study: optuna.Study) -> list[dict[str, Any]]:
    """The notebook's grid_result.json shape: params + mean/std test score + mean fit time,
    plus the trial number, state and the rest of the metrics."""
    out = []
    trials = study.get_trials(deepcopy=False)
    requeued = requeued_numbers(trials)
    names = objective_names(study)
    for t in trials:
        r = trial_row(t, requeued, names)
        rec = {"number": t.number, "state": r["state"], "params": dict(t.params)}
        rec.update({k: v for k, v in r.items() if not k.startswith("param_") and k not in ("number", "state")})
        rec["intermediate_values"] = {str(k): v for k, v in sorted(t.intermediate_values.items())}
        out.append(rec)
    _add_pareto(study, trials, out)
    return out
