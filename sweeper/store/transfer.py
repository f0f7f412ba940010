"""Move a study between storages (SQLite file <-> PostgreSQL server, or through a gRPC proxy).

The copy is Optuna's own ``optuna.copy_study``: directions, the study's user attrs (sweeper's
stored sweep definition, so workers on the destination need only its URL and the study name) and
system attrs, and every trial as it is: all states, params and distributions, values, user and
system attrs (the owner record, queued fixed params), intermediate values, start/end times.
Trial numbers are kept (re-runs point at the failed trial they replace by number).

Then sweeper checks the copy trial by trial. A copy that fails or differs is deleted from the
destination, so a destination never holds half a study.

Unfinished trials are copied as they are. WAITING ones are queued points: the destination's
workers run them. A RUNNING one belongs to a worker that writes to the source, never to the copy;
it gets one heartbeat in the destination (RDB storages), so the destination's workers fail it and
queue its params again once the heartbeat grace period has passed (at once when its owner is a
dead process on the same host), and the grid still completes every point exactly once there.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.errors import StudyError
from sweeper.store import optuna_internals as oi
from sweeper.store.storage import make_storage
from sweeper.store.studies import load


@dataclass
class CopyResult:
    study: str
    trials: int
    states: dict[str, int] = field(default_factory=dict)
    running: int = 0  # RUNNING trials copied (their heartbeat starts in the destination now)

    def summary(self) -> str:
        states = ", ".join(f"{n} {s}" for s, n in sorted(self.states.items())) or "no trials"
        return f"{self.trials} trial(s): {states}"


def copy_study(name: str, src: str | BaseStorage, dst: str | BaseStorage) -> CopyResult:
    """Copy sweeper study ``name`` from ``src`` to ``dst`` (URLs or storages), checked."""
    src_storage = make_storage(src, heartbeat=None, must_exist=True, readonly=True) if isinstance(src, str) else src
    dst_storage = make_storage(dst, heartbeat=None) if isinstance(dst, str) else dst
    source, _ = load(name, src_storage)  # a missing or non-sweeper study stops here
    if _exists(dst_storage, name):
        raise StudyError(f"study {name!r} already exists in the destination; nothing copied")
    try:
        optuna.copy_study(from_study_name=name, from_storage=src_storage, to_storage=dst_storage)
        copied = optuna.load_study(study_name=name, storage=dst_storage)
        _check_same(source, copied)
    except optuna.exceptions.DuplicatedStudyError:  # created there meanwhile: not ours to delete
        raise StudyError(f"study {name!r} already exists in the destination; nothing copied") from None
    except BaseException as exc:
        _delete_partial(dst_storage, name)
        if isinstance(exc, StudyError) or not isinstance(exc, Exception):
            raise  # a check that failed, or Ctrl-C: the partial copy is gone either way
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StudyError(f"copy of study {name!r} failed ({first}); nothing copied") from None
    trials = copied.get_trials(deepcopy=False)
    running = [t for t in trials if t.state == TrialState.RUNNING]
    if running and oi.is_heartbeat_storage(dst_storage):
        for t in running:  # starts the grace period after which the destination re-queues it
            dst_storage.record_heartbeat(oi.trial_id(t))
    states = Counter(t.state.name.lower() for t in trials)
    return CopyResult(name, len(trials), dict(states), len(running))


def trial_record(t: FrozenTrial) -> dict[str, Any]:
    """Everything a copy must keep of a trial, comparable across storages (NaN == NaN)."""
    return {
        "number": t.number,
        "state": t.state.name,
        "values": t.values,
        "params": t.params,
        "distributions": {k: optuna.distributions.distribution_to_json(d) for k, d in t.distributions.items()},
        "user_attrs": t.user_attrs,
        "system_attrs": t.system_attrs,
        "intermediate_values": sorted(t.intermediate_values.items()),
        "datetime_start": t.datetime_start,
        "datetime_complete": t.datetime_complete,
    }


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def _check_same(source: optuna.Study, copied: optuna.Study) -> None:
    if source.directions != copied.directions:
        raise StudyError(f"copy of study {source.study_name!r} differs in its directions; nothing copied")
    if _canonical(source.user_attrs) != _canonical(copied.user_attrs):
        raise StudyError(f"copy of study {source.study_name!r} differs in its user attrs; nothing copied")
    theirs = {t.number: t for t in copied.get_trials(deepcopy=False)}
    mine = source.get_trials(deepcopy=False)
    if len(mine) != len(theirs):
        raise StudyError(f"copy of study {source.study_name!r} has {len(theirs)} trials, not {len(mine)}; "
                         "nothing copied")
    for t in mine:
        other = theirs.get(t.number)
        a, b = trial_record(t), trial_record(other) if other is not None else None
        if b is None or _canonical(a) != _canonical(b):
            what = "is missing" if b is None else "differs in " + ", ".join(k for k in a if _canonical(a[k]) != _canonical(b[k]))
            raise StudyError(f"copy of study {source.study_name!r}: trial {t.number} {what} (did a worker "
                             "change it meanwhile? stop the source's workers and copy again); nothing copied")


def _exists(storage: BaseStorage, name: str) -> bool:
    try:
        storage.get_study_id_from_name(name)
    except KeyError:
        return False
    return True


def _delete_partial(storage: BaseStorage, name: str) -> None:
    try:
        storage.delete_study(storage.get_study_id_from_name(name))
    except Exception:
        pass  # never created, or the destination is gone: nothing to clean up
