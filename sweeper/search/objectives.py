"""What a finished trial tells the study: one value per objective, and its constraint values.

A Keras trial measures every metric on each split x repeat (train/trial.py ``stats``: mean and
std); the objectives' means are told, in the sweep file's order. A ``trial_function`` may return
one number (one objective) or one per objective. Computed only: the worker stores them
(worker/outcome.py), and the values stored on a trial are read back in store/pareto.py.
"""

from __future__ import annotations

from typing import Any

from sweeper.config.spec import SweepSpec
from sweeper.errors import TrialError


def metric_value(spec: SweepSpec, result: Any, metric: str) -> float:
    """The mean of ``metric`` over a trial's fits (``result``: a TrialResult)."""
    stats = getattr(result, "stats", None) or {}
    if metric in stats:
        return float(stats[metric]["mean"])
    if metric == spec.metric:
        return float(result.mean_test_score)
    fallback = {"loss": "val_loss", "n_params": "n_params", "fit_time": "fit_time", "latency_ms": "latency_ms"}
    value = getattr(result, fallback.get(metric, ""), None)
    if value is None:
        raise TrialError(f"the trial measured no {metric}")
    return float(value)


def _numbers(spec: SweepSpec, result: Any) -> dict[str, float]:
    """A trial function's plain result: one number per objective, by metric."""
    values = list(result) if isinstance(result, (list, tuple)) else [result]
    if len(values) != len(spec.objectives):
        raise TrialError(f"the trial function returned {len(values)} values for {len(spec.objectives)} objectives")
    return {o.metric: float(v) for o, v in zip(spec.objectives, values)}


def objective_values(spec: SweepSpec, result: Any) -> list[float]:
    """One value per objective, in the sweep file's order."""
    if not hasattr(result, "mean_test_score"):  # a trial function's number(s)
        return list(_numbers(spec, result).values())
    return [metric_value(spec, result, o.metric) for o in spec.objectives]


def constraint_values(spec: SweepSpec, result: Any) -> list[float] | None:
    """Optuna's convention, one per constraint: <= 0 satisfied, else by how much it is over.
    None when the sweep has no constraints."""
    if not spec.constraints:
        return None
    plain = None if hasattr(result, "mean_test_score") else _numbers(spec, result)
    out = []
    for c in spec.constraints:
        if plain is not None and c.metric not in plain:
            raise TrialError(f"constraint on {c.metric}: the trial function returned no {c.metric}")
        out.append(c.violation(plain[c.metric] if plain is not None else metric_value(spec, result, c.metric)))
    return out
