"""Synthetic studies written straight into a store (no training): for the report's benchmark and
tests, where the effects planted in the scores are known, and for trying reports quickly.

Trials look like the Keras trial's: params, objective, ``metrics`` (with ``curve``), a per-epoch
validation curve as intermediate values, durations; some failed or pruned when asked.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from typing import Any, Callable

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from sweeper.config import conditions
from sweeper.config.spec import SweepSpec, spec_from_dict
from sweeper.search import space
from sweeper.search.strategy import strategy_for
from sweeper.store import optuna_internals as oi
from sweeper.store.keys import ERROR_ATTR, METRICS_ATTR, SPEC_ATTR
from sweeper.store.storage import make_storage

Score = Callable[[dict[str, Any]], float]

NOTEBOOK_PARAMS: dict[str, Any] = {
    # The Kannada-MNIST notebook's grid (docs/reference_notebooks.md, notebook A), cut to what an MLP sweep searches.
    "batch_size": [1024, 2048],
    "optimizer": ["rmsprop", "adam"],
    "optimizer__learning_rate": [0.001, 0.002, 0.01],
    "model__batchnorm": [True, False],
    "model__dropout": [0.2, 0.4],
}


def notebook_score(p: dict[str, Any]) -> float:
    """Accuracy shaped like the notebook's findings: BatchNorm helps, dropout 0.2 beats 0.4,
    smaller batches are better, the optimizer hardly matters."""
    acc = 0.90
    acc += 0.02 if p.get("model__batchnorm") else 0.0
    acc += 0.01 if float(p.get("model__dropout", 0.2)) <= 0.2 else 0.0
    acc += 0.008 if int(p.get("batch_size", 1024)) <= 1024 else 0.0
    acc += 0.004 * math.log10(float(p.get("optimizer__learning_rate", 1e-3)) / 1e-3)
    return acc


def make_spec(name: str, params: dict[str, Any] | None = None, method: str | None = None,
              trials: int | None = None, **fields: Any) -> SweepSpec:
    """A valid sweep definition that uses the cheap synthetic trial (nothing is trained)."""
    raw: dict[str, Any] = {
        "name": name,
        "data": {"dataset": "digits"},
        "model": "mlp",
        "params": params or NOTEBOOK_PARAMS,
        "training": {"epochs": 10},
        "trial_function": "support.synthetic:no_trial",
        "seed": 0,
    }
    if method:
        raw["method"] = method
    if trials:
        raw["trials"] = trials
    raw.update(fields)
    return spec_from_dict(raw, source="synthetic", stored=True)  # as read back from a store: any name


def no_trial(spec: SweepSpec, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """The trial function of synthetic studies (so that ``sweeper resume`` would work too)."""
    return notebook_score(params)


def mlp_params(p: dict[str, Any]) -> int:
    """The notebook MLP's parameter count (units, 2x, 4x on 784 inputs, 10 classes; BatchNorm's
    4 per unit), as n_params of a real trial of model: mlp would be."""
    u = int(p.get("model__units", 64))
    return 10 * u * u + 831 * u + 10 + (28 * u if p.get("model__batchnorm") else 0)


def other_metrics(p: dict[str, Any], accuracy: float, fit_time: float) -> dict[str, float]:
    """Every metric an objective may name, for a synthetic trial of accuracy ``accuracy``."""
    n = mlp_params(p)
    return {"accuracy": accuracy, "loss": max(0.01, 1.0 - accuracy), "n_params": float(n),
            "fit_time": fit_time, "latency_ms": 0.004 + n * 2e-8}


def _points(spec: SweepSpec, n: int, rng: random.Random) -> list[dict[str, Any]]:
    if spec.grid_size:
        grid = space.grid_points(spec)
        out = []
        while len(out) < n:
            block = list(grid)
            rng.shuffle(block)
            out += block
        return out[:n]
    points = []
    for _ in range(n):
        point: dict[str, Any] = {}
        for name in conditions.order(spec.params):  # a parameter whose condition fails is absent
            p = spec.params[name]
            if not conditions.holds(p.when, point):
                continue
            if p.values is not None:
                point[name] = rng.choice(p.values)
            elif p.log:
                v = math.exp(rng.uniform(math.log(p.low), math.log(p.high)))
                point[name] = int(round(v)) if p.is_int else v
            else:
                point[name] = rng.randint(int(p.low), int(p.high)) if p.is_int else rng.uniform(p.low, p.high)
        points.append(point)
    return points


def make_study(
    spec: SweepSpec,
    storage: str | BaseStorage,
    n_trials: int,
    score: Score = notebook_score,
    noise: float = 0.004,
    fail_rate: float = 0.0,
    prune_rate: float = 0.0,
    epochs: int = 5,
    seed: int = 0,
) -> optuna.Study:
    """Create ``spec``'s study in ``storage`` holding ``n_trials`` finished synthetic trials:
    objective = ``score(params)`` + Gaussian ``noise``; ``fail_rate``/``prune_rate`` of them
    failed/pruned. Grids are cycled through (each point repeated), ranges sampled uniformly."""
    rng = random.Random(seed)
    if isinstance(storage, str):
        storage = make_storage(storage, heartbeat=None)
    study = optuna.create_study(study_name=spec.name, storage=storage, directions=spec.directions)
    study.set_user_attr(SPEC_ATTR, spec.raw)
    if spec.multi_objective:
        study.set_metric_names(spec.objective_names)
    dists = strategy_for(spec).distributions()
    clock = dt.datetime(2024, 1, 1, 9, 0, 0)
    trials = []
    for number, point in enumerate(_points(spec, n_trials, rng)):
        value = score(point) + rng.gauss(0.0, noise)
        if spec.metric == "accuracy":
            value = min(1.0, max(0.0, value))
        # A rising (accuracy) or falling (loss) validation curve ending at the final value.
        curve = [value * (1.0 - 0.5 * math.exp(-1.2 * e)) if spec.metric == "accuracy"
                 else value * (1.0 + math.exp(-1.2 * e)) for e in range(epochs)]
        curve[-1] = value
        fit_time = rng.uniform(2.0, 6.0)
        start, end = clock, clock + dt.timedelta(seconds=fit_time)
        clock = end
        roll = rng.random()
        if roll < fail_rate:
            trials.append(optuna.trial.create_trial(
                state=TrialState.FAIL, params=point, distributions={k: dists[k] for k in point},
                user_attrs={ERROR_ATTR: "ResourceExhaustedError: OOM when allocating tensor (synthetic)"},
            ))
        elif roll < fail_rate + prune_rate:
            cut = max(1, epochs // 2)
            trials.append(optuna.trial.create_trial(
                state=TrialState.PRUNED, params=point, distributions={k: dists[k] for k in point},
                intermediate_values={} if spec.multi_objective else {e: curve[e] for e in range(cut)},
            ))
        else:
            measured = other_metrics(point, value, fit_time)  # several objectives, constraints
            values = [measured[o.metric] if i else value for i, o in enumerate(spec.objectives)]
            system = ({oi.constraints_key(): [c.violation(measured[c.metric]) for c in spec.constraints]}
                      if spec.constraints else {})
            metrics = {
                "mean_test_score": value, "std_test_score": 0.0, "split_scores": [value],
                "val_loss": max(0.01, 1.0 - value) if spec.metric == "accuracy" else value,
                "train_accuracy": min(1.0, value + 0.01) if spec.metric == "accuracy" else 0.9,
                "fit_time": fit_time, "epochs_run": epochs, "n_params": 109_386, "curve": curve,
            }
            trials.append(optuna.trial.create_trial(
                state=TrialState.COMPLETE, values=values, params=point, distributions={k: dists[k] for k in point},
                user_attrs={METRICS_ATTR: metrics}, system_attrs=system,
                intermediate_values={} if spec.multi_objective else dict(enumerate(curve)),
            ))
        # create_trial stamps "now"; give the trials a plausible timeline instead.
        trials[-1].datetime_start, trials[-1].datetime_complete = start, end
    study.add_trials(trials)
    return study
