"""Live tracking (the sweep file's ``tracking``): after each trial is told, the worker that ran it
writes that trial to TensorBoard (its run folder ``trial-NNNN`` rewritten) and/or MLflow (its run
found by its tags and updated), the same runs ``sweeper export`` writes, so an export afterwards
duplicates nothing. ``check`` refuses an unusable MLflow tracking URI before the study exists; a
sink that fails during the sweep is one warning line on stderr and the trial stands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import optuna

from sweeper.config.spec import SweepSpec

# This process's MLflow connections: (uri, experiment, study) -> (client, experiment id, parent run id).
_MLFLOW: dict[tuple[str, str, str], tuple[Any, str, str]] = {}


def check(spec: SweepSpec) -> None:
    """At ``run``, before the study is made: MLflow installed and its tracking URI reachable (the
    experiment made if need be), else a one-line SweeperError naming ``tracking.mlflow``."""
    t = spec.tracking
    if t.mlflow:
        from sweeper.tracking.mlflow_runs import connect

        connect(t.mlflow, t.experiment, key="tracking.mlflow", who="tracking.mlflow")


def start(study: optuna.Study, spec: SweepSpec) -> None:
    """At ``run``, once the study exists: the study's parent MLflow run (made once, before any
    worker starts, so workers find it) and TensorBoard's hparams config (rewritten)."""
    t = spec.tracking
    if t.tensorboard:
        _guard("tensorboard", t.tensorboard, "the hparams config", lambda: _config(study, spec))
    if t.mlflow:
        _guard("mlflow", t.mlflow, "the study's run", lambda: _connection(spec))


def after_tell(study: optuna.Study, spec: SweepSpec, number: int) -> None:
    """Write trial ``number`` (just told) to the sweep's sinks; never raises."""
    t = spec.tracking
    if not t.active:
        return
    from sweeper.tracking.records import record

    try:
        r = record(study, spec, number)
    except Exception as exc:
        _warn("tensorboard" if t.tensorboard else "mlflow", t.tensorboard or t.mlflow or "", f"trial {number}", exc)
        return
    if r is None:
        return
    if t.tensorboard:
        _guard("tensorboard", t.tensorboard, f"trial {number}", lambda: _tensorboard(study, spec, r))
    if t.mlflow:
        _guard("mlflow", t.mlflow, f"trial {number}", lambda: _mlflow(spec, r))


def _guard(sink: str, where: str, what: str, write: Any) -> None:
    try:
        write()
    except Exception as exc:  # a tracker's trouble never fails a trial
        _warn(sink, where, what, exc)


def _warn(sink: str, where: str, what: str, exc: BaseException) -> None:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
    print(f"sweeper: warning: tracking.{sink} {where}: {what} not logged ({first}); the sweep goes on",
          file=sys.stderr, flush=True)


def _config(study: optuna.Study, spec: SweepSpec) -> None:
    from sweeper.store.progress import OUTCOMES
    from sweeper.tracking.records import records
    from sweeper.tracking.tb_runs import write_config

    # Every outcome a trial may come to: the trials to come are not known yet.
    write_config(Path(spec.tracking.tensorboard or "."), spec, records(study, spec), OUTCOMES)


def _tensorboard(study: optuna.Study, spec: SweepSpec, r: Any) -> None:
    from sweeper.tracking.tb_runs import events, hparams, write_trial

    folder = Path(spec.tracking.tensorboard or ".")
    if not events(folder):  # a worker of a study whose config ``run`` did not write
        _config(study, spec)
    write_trial(folder, spec, r, hparams(spec, [r])[1])


def _connection(spec: SweepSpec) -> tuple[Any, str, str]:
    from sweeper.tracking.mlflow_runs import connect, find_parent

    t = spec.tracking
    key = (t.mlflow or "", t.experiment, spec.name)
    if key not in _MLFLOW:
        client, exp_id = connect(key[0], t.experiment, key="tracking.mlflow", who="tracking.mlflow")
        _MLFLOW[key] = (client, exp_id, find_parent(client, exp_id, spec).info.run_id)
    return _MLFLOW[key]


def _mlflow(spec: SweepSpec, r: Any) -> None:
    from sweeper.tracking.mlflow_runs import runs, trial_run

    client, exp_id, parent_id = _connection(spec)
    found = runs(client, exp_id, spec.name, trial=str(r.number))
    trial_run(client, exp_id, parent_id, spec, r, found.get(str(r.number)))
