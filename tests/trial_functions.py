"""Cheap trial functions (``trial_function: trial_functions:NAME``) for orchestration tests:
they exercise the real study loop, storage and CLI without paying for Keras."""

from __future__ import annotations

import os
import time
import zlib
from typing import Any


def score(params: dict[str, Any]) -> float:
    """Deterministic in the params: a re-run trial scores what its first run scored."""
    return sum(zlib.crc32(f"{k}={v}".encode()) % 1000 for k, v in sorted(params.items())) / 1e4


def quick(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    return score(params)


def slow(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    time.sleep(float(os.environ.get("SWEEPER_TEST_SLEEP", "0.4")))
    return score(params)


def flaky(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """Fails for x == 1 unless SWEEPER_TEST_HEAL is set (to test --retry-failed)."""
    if params.get("model__units") == 1 and not os.environ.get("SWEEPER_TEST_HEAL"):
        raise RuntimeError("simulated build failure for units=1")
    return score(params)


def out_of_memory(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    import tensorflow as tf

    if params.get("model__units") == 2:
        raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[4096,4096]")
    return score(params)


def curve(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """Reports a per-epoch curve: units=1 and 3 learn well, units=2 stays at 0.1 (pruned)."""
    level = 0.1 if params.get("model__units") == 2 else 0.9
    for epoch in range(3):
        if on_epoch is not None:
            on_epoch(epoch, level)
    return level


def curve_or_fail(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """``curve``, but units=3 with dropout 0.2 fails (complete, pruned and failed trials)."""
    if params.get("model__units") == 3 and params.get("model__dropout") == 0.2:
        raise RuntimeError("simulated failure for units=3, dropout=0.2")
    return curve(spec, params, seed, on_epoch)


def failed_elsewhere(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """While this trial runs, 'another worker' fails it (as a false stale heartbeat would)."""
    import optuna

    study = optuna.load_study(study_name=spec.name, storage=spec.storage)
    for t in study.get_trials(states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    return score(params)


def counted(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """Appends one line per call to $SWEEPER_TEST_CALLS (to count trainings), then scores."""
    with open(os.environ["SWEEPER_TEST_CALLS"], "a") as f:
        f.write(f"{params.get('model__units')}\n")
    return score(params)


_STORAGES: dict[str, Any] = {}


def _completed(spec: Any) -> int:
    """How many trials of this trial's study have completed (any worker's, any process's)."""
    import optuna

    from sweeper.store.storage import make_storage

    if spec.storage not in _STORAGES:
        _STORAGES[spec.storage] = make_storage(spec.storage, must_exist=True, readonly=True)
    storage = _STORAGES[spec.storage]
    sid = storage.get_study_id_from_name(spec.name)
    return len(storage.get_all_trials(sid, deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def plateau(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """Whatever its params: 0.1, 0.2, 0.3 for the first three trials of its study to complete,
    then 0.3 for ever (a search that found its answer at its third trial)."""
    return 0.1 * (min(_completed(spec), 2) + 1)


def pareto_plateau(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> list[float]:
    """Two objectives (maximize, minimize): (0.1, 1), (0.2, 2), (0.3, 3) for the first three
    trials to complete, a Pareto front of three; then (0.2, 3), which leaves the front unchanged."""
    n = _completed(spec)
    return [0.1 * (n + 1), float(n + 1)] if n < 3 else [0.2, 3.0]


def recorded(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """Appends each trained point (its params as JSON, one line) to $SWEEPER_TEST_CALLS, then scores."""
    import json

    with open(os.environ["SWEEPER_TEST_CALLS"], "a") as f:
        f.write(json.dumps(params, sort_keys=True) + "\n")
    return score(params)


def exact_params(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """Fails a trial whose searched params are not exactly the ones that exist at its values
    (conditional parameters): one whose condition fails was passed, or one that exists was not."""
    from sweeper.config import conditions

    searched = {k: v for k, v in params.items() if k in spec.params}
    if not conditions.is_point(spec.params, searched):
        raise RuntimeError(f"params {sorted(searched)} are not the ones that exist there")
    return score(params)
