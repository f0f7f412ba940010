"""Every use of Optuna's private API, in one place (pyproject pins optuna below 5).

sweeper claims queued trials itself (atomic WAITING->RUNNING), records heartbeats while it
trains, and serves a SQLite store to local workers over gRPC: each needs a piece of Optuna that
``Study.optimize`` uses internally but does not export.
"""

from __future__ import annotations

from typing import Any, Sequence

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState


def storage_of(study: optuna.Study) -> BaseStorage:
    return study._storage


def study_id(study: optuna.Study) -> int:
    return study._study_id


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    return trial._trial_id


def heartbeat_storage(storage: BaseStorage) -> Any | None:
    """The storage when it records heartbeats (RDB with an interval), else None."""
    from optuna.storages._heartbeat import BaseHeartbeat

    if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval():
        return storage
    return None


def is_heartbeat_storage(storage: BaseStorage) -> bool:
    from optuna.storages._heartbeat import BaseHeartbeat

    return isinstance(storage, BaseHeartbeat)


def tell(study: optuna.Study, trial: optuna.Trial, value: float | Sequence[float] | None,
         state: TrialState | None) -> TrialState:
    """``study.tell`` minus the read-back of the stored trial it returns: the state is all the
    loop needs. ``Study.optimize`` tells through the same internal function. ``value``: one
    number, or one per objective of a multi-objective study."""
    if value is not None and not isinstance(value, (int, float)):
        value = [float(v) for v in value]
    try:
        from optuna.study._tell import _tell_with_warning
    except ImportError:
        return study.tell(trial, value, state=state, skip_if_finished=True).state
    return _tell_with_warning(study, trial, value, state, skip_if_finished=True)[0]


def new_running_trial(study: optuna.Study, system_attrs: dict[str, Any],
                      user_attrs: dict[str, Any] | None = None) -> optuna.Trial:
    """``study.ask()`` minus its queue lookup, with ``system_attrs`` and ``user_attrs`` in the same insert."""
    template = optuna.trial.create_trial(state=TrialState.RUNNING, system_attrs=system_attrs, user_attrs=user_attrs)
    return optuna.Trial(study, study._storage.create_new_trial(study._study_id, template_trial=template))


def trial_handle(study: optuna.Study, frozen_trial_id: int) -> optuna.Trial:
    return optuna.Trial(study, frozen_trial_id)


def grpc_server(storage: BaseStorage, host: str, port: int) -> Any:
    """Optuna's gRPC storage server with one writer thread (local workers share one SQLite file)."""
    from concurrent.futures import ThreadPoolExecutor

    from optuna.storages._grpc.server import make_server

    return make_server(storage, host, port, ThreadPoolExecutor(max_workers=1))


def rdb_engine(storage: BaseStorage) -> Any | None:
    """The SQLAlchemy engine behind an RDB storage (Optuna wraps it in a private cache), or None."""
    backend = getattr(storage, "_backend", storage)
    return getattr(backend, "engine", None)


def heartbeat_grace_s(storage: BaseStorage) -> float:
    """Seconds after its last beat that a trial counts as stale (0: no heartbeats)."""
    hb = heartbeat_storage(storage)
    backend = getattr(hb, "_backend", hb)
    return float(getattr(backend, "grace_period", None) or 0.0)


def unbeaten_running_trials(storage: BaseStorage, study: optuna.Study) -> set[int]:
    """Ids of the study's RUNNING trials with no heartbeat recorded yet. Optuna's stale check
    skips them (storages/_rdb/storage.py: _get_stale_trial_ids), so a worker on another host
    that died before its first beat would leave its trial RUNNING for ever."""
    hb = heartbeat_storage(storage)
    backend = getattr(hb, "_backend", hb)
    if hb is None or not hasattr(backend, "scoped_session"):
        return set()
    from optuna.storages._rdb import models

    session = backend.scoped_session()
    try:
        beaten = session.query(models.TrialHeartbeatModel.trial_id)
        rows = (session.query(models.TrialModel.trial_id)
                .filter(models.TrialModel.study_id == study_id(study),
                        models.TrialModel.state == TrialState.RUNNING,
                        models.TrialModel.trial_id.notin_(beaten))
                .all())
        return {int(r[0]) for r in rows}
    finally:
        session.close()


def schema_tables() -> set[str]:
    """The tables of Optuna's RDB schema (its alembic stamp included)."""
    from optuna.storages._rdb import models

    return set(models.BaseModel.metadata.tables) | {"alembic_version"}


def queued_params(trial: FrozenTrial) -> dict[str, Any] | None:
    """The params ``enqueue_trial`` fixed for a WAITING trial (Optuna keeps them in a system attr
    that ``Trial.suggest_*`` reads), or None."""
    params = trial.system_attrs.get("fixed_params")
    return dict(params) if isinstance(params, dict) else None


def constraints_key() -> str:
    """The trial system attribute where Optuna's samplers keep constraint values (a list, each
    <= 0 when satisfied): what ``constraints_func`` results are stored under."""
    from optuna.study._constrained_optimization import _CONSTRAINTS_KEY

    return _CONSTRAINTS_KEY


def record_artifact(trial: optuna.Trial, artifact_id: str, filename: str) -> None:
    """Optuna's record of one uploaded file on a running trial: the system attr ``upload_artifact``
    stores (``artifacts:ID`` -> its ``ArtifactMeta`` as JSON), so ``get_all_artifact_meta`` and
    optuna-dashboard list it. ``upload_artifact`` stores it *before* writing the file (a kill in
    between leaves an id naming no file); sweeper writes the file first, then calls this."""
    import json
    import mimetypes
    from dataclasses import asdict

    from optuna.artifacts import ArtifactMeta
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

    mimetype, encoding = mimetypes.guess_type(filename)
    meta = ArtifactMeta(artifact_id=artifact_id, filename=filename,
                        mimetype=mimetype or "application/octet-stream", encoding=encoding)
    trial.storage.set_trial_system_attr(trial_id(trial), ARTIFACTS_ATTR_PREFIX + artifact_id, json.dumps(asdict(meta)))


def artifact_ids(trial: FrozenTrial) -> list[str]:
    """The ids of the files Optuna records as uploaded for ``trial`` (its ``artifacts:ID`` attrs)."""
    from optuna.artifacts._upload import ARTIFACTS_ATTR_PREFIX

    return [k[len(ARTIFACTS_ATTR_PREFIX):] for k in trial.system_attrs if k.startswith(ARTIFACTS_ATTR_PREFIX)]
