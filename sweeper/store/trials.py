"""Trial bookkeeping every worker shares: who owns a running trial, claiming queued trials (one,
or several that train as one pack), re-queueing dead ones, queueing grid points, repeats of
completed points.

A worker's death is charged to a trial only when a live supervisor saw it while that trial ran
alone (``record_death``). A trial whose worker died otherwise (killed from outside, a lost host,
a pack that died) becomes a *suspect*: re-queued with ``SUSPECT_ATTR``, never failed for it, and
run alone, supervised, next (worker/supervise.py)."""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.config import conditions
from sweeper.config.spec import ParamSpec, SweepSpec, canonical_key, from_stored
from sweeper.errors import SweeperError
from sweeper.search import space
from sweeper.search.strategy import strategy_for
from sweeper.store import optuna_internals as oi
from sweeper.store.keys import (
    DUPLICATE_OF_ATTR,
    ERROR_ATTR,
    OWNER_ATTR,
    PLACEMENT_ATTR,
    RETRY_OF_ATTR,
    RETRY_REASON_ATTR,
    SPEC_ATTR,
    SUSPECT_ATTR,
    WORKER_DEATHS_ATTR,
    WORKER_DIED_ATTR,
)
from sweeper.store.placement import placement_record
from sweeper.store.progress import is_finished, requeued_numbers, trial_point

HOST = socket.gethostname()


def queue_points(study: optuna.Study, spec: SweepSpec) -> int:
    """Queue every point of the strategy that no trial covers yet; returns how many were queued.
    Idempotent, so a crash while queueing is mended by the next run or resume."""
    points = strategy_for(spec).points()
    if not points:
        return 0
    trials = study.get_trials(deepcopy=False)
    requeued = requeued_numbers(trials)
    searched = spec.params
    covered = set()
    for t in trials:
        # A failed trial covers its point only if it failed for its own reason (a re-queued one's
        # re-run covers it; one whose worker died before storing its params covers nothing).
        if t.state == TrialState.FAIL and not is_finished(t, requeued, searched):
            continue
        point = trial_point(t)
        if point:
            covered.add(space.params_key(point))
    queued = 0
    for point in points:
        if space.params_key(point) not in covered:
            study.enqueue_trial(point)
            queued += 1
    return queued


def requeue(study: optuna.Study, trial: FrozenTrial, reason: str | None = None, deaths: int | None = None,
            suspect: str | None = None) -> bool:
    """Queue a failed trial's point again (Ctrl-C, --retry-failed, a dead worker: ``suspect`` says
    why it runs alone next; ``deaths`` so far, seen by a supervisor); False when the trial has no
    whole point to queue (a sampler's trial whose worker died between its params' writes: the
    sampler proposes a new one instead). A suspect stays one until it ends on its own."""
    reason = reason or trial.user_attrs.get(ERROR_ATTR) or "worker stopped sending heartbeats"
    point = trial_point(trial)
    if not point or conditions.missing(_searched(study), point):
        return False
    attrs: dict[str, Any] = {RETRY_OF_ATTR: trial.number, RETRY_REASON_ATTR: reason}
    deaths = trial.user_attrs.get(WORKER_DEATHS_ATTR) if deaths is None else deaths
    if deaths:
        attrs[WORKER_DEATHS_ATTR] = int(deaths)
    suspect = suspect or trial.user_attrs.get(SUSPECT_ATTR)
    if suspect:
        attrs[SUSPECT_ATTR] = suspect
    study.enqueue_trial(point, user_attrs=attrs)
    return True


def requeue_stale(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's callback for a trial whose heartbeats stopped (its host died): queue it again as a
    suspect; a lost host is not the trial's fault."""
    reason = "worker stopped sending heartbeats"
    requeue(study, trial, reason, suspect=f"{reason} (host lost or worker killed)")


def _searched(study: optuna.Study) -> dict[str, ParamSpec]:
    """The study's searched parameters with their conditions, from its stored definition (one
    that cannot be read: its parameter names, unconditional)."""
    raw = study.user_attrs.get(SPEC_ATTR) or {}
    try:
        return from_stored(raw, study.study_name).params
    except SweeperError:
        return {canonical_key(k): ParamSpec(canonical_key(k)) for k in (raw.get("params") or {})}


def max_worker_deaths(study: optuna.Study) -> int:
    raw = study.user_attrs.get(SPEC_ATTR) or {}
    value = raw.get("max_worker_deaths", 2)
    return int(value) if isinstance(value, int) and value >= 1 else 2


_owner: dict[str, Any] = {}
SUPERVISOR_ENV = "SWEEPER_SUPERVISOR"  # set by a supervisor on the worker it starts: its own owner record


def owner_record() -> dict[str, Any]:
    """This process, as stored on the trials it runs (kept per pid: a forked child is not its
    parent), with its supervisor's record when one started it."""
    import psutil

    if _owner.get("pid") != os.getpid():
        me = psutil.Process()
        _owner.clear()
        _owner.update(host=HOST, pid=me.pid, started=me.create_time())
        if os.environ.get(SUPERVISOR_ENV):
            _owner["supervisor"] = json.loads(os.environ[SUPERVISOR_ENV])
    return dict(_owner)


def _owner_alive(owner: dict[str, Any]) -> bool:
    import psutil

    try:
        proc = psutil.Process(int(owner["pid"]))
        # A recycled pid belongs to a process started later than the owner.
        return abs(proc.create_time() - float(owner["started"])) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        return False


def reap_dead_trials(study: optuna.Study, orphan_after_s: float = 15.0) -> int:
    """Re-queue RUNNING trials whose worker is gone, as suspects: at once for workers of this host
    (their pid is dead), through Optuna heartbeats for other hosts (RDB storages). A trial run
    by a supervised worker whose supervisor lives is left to that supervisor (``record_death``)."""
    from optuna.storages import fail_stale_trials

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        fail_stale_trials(study)  # calls `requeue_stale` through the storage's failed_trial_callback
    reaped = 0
    now = time.time()
    unbeaten = oi.unbeaten_running_trials(oi.storage_of(study), study)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.system_attrs.get(OWNER_ATTR)
        if owner is not None and owner.get("host") != HOST and oi.trial_id(t) in unbeaten:
            # Another host's worker that never beat for it: dead once a beat is long overdue.
            started = t.datetime_start.timestamp() if t.datetime_start else now
            if now - started < max(orphan_after_s, oi.heartbeat_grace_s(oi.storage_of(study))):
                continue
            reaped += fail_dead(study, t, f"its worker on {owner.get('host')} never sent a heartbeat", counted=False)
            continue
        if owner is None:
            # Owned within milliseconds of being claimed; older than this means its worker died then.
            started = t.datetime_start.timestamp() if t.datetime_start else now
            if now - started < orphan_after_s:
                continue
            reason = "worker died before recording itself"
        elif owner.get("host") != HOST or _owner_alive(owner) or _owner_alive(owner.get("supervisor") or {}):
            continue
        else:
            reason = f"worker pid {owner.get('pid')} on {HOST} died while running this trial"
        reaped += fail_dead(study, t, reason, counted=False)
    return reaped


def fail_dead(study: optuna.Study, trial: FrozenTrial, reason: str, counted: bool) -> int:
    """Fail a RUNNING trial whose worker died and queue its point again as a suspect; ``counted``
    (a supervisor saw the death while it ran alone): one more worker death charged to it, and at
    ``max_worker_deaths`` it fails for good. Returns 1 when this call failed it (0: another
    reaper, or its own tell, came first)."""
    storage = oi.storage_of(study)
    tid = oi.trial_id(trial)
    deaths = int(trial.user_attrs.get(WORKER_DEATHS_ATTR, 0)) + (1 if counted else 0)
    poison = counted and deaths >= max_worker_deaths(study)
    if poison:  # e.g. its fit is killed by the OOM killer every time: stop re-running it
        reason = f"worker died {deaths} times running this trial (out of memory?); last: {reason}"
    try:
        # The reason goes on while the trial is still RUNNING; then one reaper wins the FAIL.
        storage.set_trial_user_attr(tid, ERROR_ATTR, reason)
        if not poison:
            storage.set_trial_user_attr(tid, WORKER_DIED_ATTR, True)
        if not storage.set_trial_state_values(tid, TrialState.FAIL):
            return 0
    except optuna.exceptions.UpdateFinishedTrialError:
        return 0  # another worker reaped it (or it finished) first
    if not poison:
        suspect = f"{reason} ({deaths} of {max_worker_deaths(study)} deaths alone)" if counted else reason
        requeue(study, storage.get_trial(tid), reason, deaths=deaths, suspect=suspect)
    return 1


def retry_failed(study: optuna.Study) -> int:
    """``resume --retry-failed``: queue again every failed point (that did not complete since)."""
    trials = study.get_trials(deepcopy=False)
    requeued = requeued_numbers(trials)
    done = {space.params_key(t.params) for t in trials if t.state == TrialState.COMPLETE}
    searched = _searched(study)
    n = 0
    for t in trials:
        if t.state != TrialState.FAIL or t.number in requeued or space.params_key(t.params) in done:
            continue
        if not is_finished(t, requeued, searched):
            continue  # its worker died before storing its params: not a failure of its own
        if requeue(study, t, t.user_attrs.get(ERROR_ATTR, "failed"), deaths=0):
            done.add(space.params_key(t.params))
            n += 1
    return n


def completed_twin(study: optuna.Study, searched: dict[str, Any], number: int) -> FrozenTrial | None:
    """The first completed trial (other than ``number``) with exactly these searched params: the
    trial seed depends on the params only, so training again would reproduce its result."""
    key = space.params_key(searched)
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != number and t.values is not None and not t.user_attrs.get(DUPLICATE_OF_ATTR) \
                and space.params_key(t.params) == key:
            return t
    return None


def claim_waiting(study: optuna.Study, suspects: bool = False) -> optuna.Trial | None:
    """Atomically take a queued trial (``suspects``: only a suspect, else only a trial that is not
    one): the storage's WAITING->RUNNING update succeeds for one worker only, so no queued grid
    point runs twice (optuna#2039, #4627, #5489). Its owner record and placement are stored at once."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if bool(t.user_attrs.get(SUSPECT_ATTR)) == suspects:
            trial = claim(study, t)
            if trial is not None:
                return trial
    return None


def claim(study: optuna.Study, queued: FrozenTrial) -> optuna.Trial | None:
    """Take one queued trial for this worker (None: another worker took it first)."""
    storage = oi.storage_of(study)
    try:
        if storage.set_trial_state_values(oi.trial_id(queued), state=TrialState.RUNNING):
            _first_beat(storage, oi.trial_id(queued))
            storage.set_trial_system_attr(oi.trial_id(queued), OWNER_ATTR, owner_record())
            storage.set_trial_user_attr(oi.trial_id(queued), PLACEMENT_ATTR, placement_record())
            return oi.trial_handle(study, oi.trial_id(queued))
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
    return None


# Queued points looked at for a full pack's other-epoch points (a grid queues them a fixed stride
# apart), so that a huge grid's queue is not read to its end for each pack.
TWIN_WINDOW = 2000


def claim_packmates(study: optuna.Study, spec: SweepSpec, key_of: Callable[[dict[str, Any]], Any], key: Any,
                    n: int, first: dict[str, Any]) -> list[optuna.Trial]:
    """Claim queued trials (never suspects) whose point ``key_of`` (full params -> pack key) puts
    in a pack with ``key``: up to ``n`` more configurations besides ``first`` (full params), each
    with its points that differ only in epochs, which the pack trains once (a searched ``epochs``;
    space.trial_seed)."""
    twins = "epochs" in spec.params and spec.seed_rule >= 2
    groups: dict[str, list[FrozenTrial]] = {space.but_epochs_key(first): []}
    window = TWIN_WINDOW
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if len(groups) > n:  # full: only the other-epoch points of its configurations still join
            window -= 1
            if not twins or window < 0:
                break
        point = oi.queued_params(t)
        if point is None or t.user_attrs.get(SUSPECT_ATTR):
            continue
        params = space.full_params(spec, point)
        if key_of(params) != key:
            continue
        same = space.but_epochs_key(params) if twins else str(oi.trial_id(t))
        if same in groups or len(groups) <= n:
            groups.setdefault(same, []).append(t)
    claimed = (claim(study, t) for group in groups.values() for t in group)
    return [t for t in claimed if t is not None]


def queued_suspects(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
               if t.user_attrs.get(SUSPECT_ATTR))


def ask_new(study: optuna.Study) -> optuna.Trial:
    """A new RUNNING trial with this worker's owner record and placement in the same insert."""
    trial = oi.new_running_trial(study, {OWNER_ATTR: owner_record()}, {PLACEMENT_ATTR: placement_record()})
    _first_beat(oi.storage_of(study), oi.trial_id(trial))
    return trial


def _first_beat(storage: Any, tid: int) -> None:
    """Beat once as soon as a trial is ours: Optuna never calls a trial without a heartbeat stale,
    so a worker on another host killed before the beat its training starts would otherwise leave
    the trial RUNNING for ever (reap_dead_trials also catches the milliseconds before this one)."""
    hb = oi.heartbeat_storage(storage)
    if hb is not None:
        hb.record_heartbeat(tid)


def tell_outcome(study: optuna.Study, trial: optuna.Trial, state: TrialState, value: float | None = None,
                 attrs: dict[str, Any] | None = None) -> TrialState:
    """Store a claimed trial's outcome: its attrs, then one tell. If another worker failed it in
    the meantime (a false stale heartbeat), that verdict stands and its state is returned."""
    storage = oi.storage_of(study)
    tid = oi.trial_id(trial)
    try:
        for key, v in (attrs or {}).items():
            storage.set_trial_user_attr(tid, key, v)
        return oi.tell(study, trial, value, None if value is not None else state)
    except optuna.exceptions.UpdateFinishedTrialError:
        return storage.get_trial(tid).state


MAX_ERROR_CHARS = 20_000


def error_text(exc: BaseException) -> str:
    """The whole message (TensorFlow's first line is often only 'Graph execution error:'); show
    prints its first line, ``show --trial N`` and the report the whole of it."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:MAX_ERROR_CHARS] if text else type(exc).__name__


INTERRUPTED = "interrupted (Ctrl-C); queued again"


def requeue_interrupted(study: optuna.Study, trial: optuna.Trial) -> None:
    """Ctrl-C anywhere after a claim: fail the trial with that reason and queue its point again
    (unless another worker's verdict came first)."""
    tell_outcome(study, trial, TrialState.FAIL, attrs={ERROR_ATTR: INTERRUPTED})
    frozen = oi.storage_of(study).get_trial(oi.trial_id(trial))
    if frozen.state == TrialState.FAIL and frozen.user_attrs.get(ERROR_ATTR) == INTERRUPTED:  # ours
        requeue(study, frozen, INTERRUPTED)


def requeue_mine(study: optuna.Study) -> int:
    """Ctrl-C between a claim and its trial's own Ctrl-C block: queue again every trial this
    process still runs."""
    me = owner_record()
    mine = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if {k: v for k, v in (t.system_attrs.get(OWNER_ATTR) or {}).items() if k in me} == me]
    for t in mine:
        requeue_interrupted(study, oi.trial_handle(study, oi.trial_id(t)))
    return len(mine)


def worker_salt(study: optuna.Study, index: int) -> int:
    """0 for the first worker of a fresh study (reproducible), different after any restart."""
    return len(study.get_trials(deepcopy=False)) * 1_009 + index
