"""Fused packs in the worker loop: take up to K trials of one structure (queued ones claimed
atomically, or new ones asked of the sampler), train them as one model (train/pack_trial.py),
then tell each trial its own outcome. Every member stays an Optuna trial of its own: its owner
record and heartbeat from the claim on, its params, curve, pruning decision and result; Ctrl-C
re-queues every member not yet told.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper import outcome
from sweeper.config.spec import SweepSpec
from sweeper.search import space
from sweeper.search.strategy import strategy_for
from sweeper.store import optuna_internals as oi
from sweeper.store.heartbeat import Heartbeat
from sweeper.store.keys import ERROR_ATTR, OWNER_ATTR
from sweeper.store.trials import (
    ask_new,
    completed_twin,
    error_text,
    owner_record,
    requeue_interrupted,
    tell_outcome,
)


# Queued points looked at for a full pack's other-epoch points (a grid queues them a fixed stride
# apart), so that a huge grid's queue is not read to its end for each pack.
TWIN_WINDOW = 2000


@dataclass
class Member:
    """A claimed trial on its way into a pack."""

    trial: optuna.Trial
    params: dict[str, Any]  # full params (fixed settings and the searched values)
    seed: int
    key: Any  # pack key (structure, batch size), or None: it trains alone
    told: bool = False


def pack_size(spec: SweepSpec, key: Any | None = None) -> int:
    """The sweep's pack limit (1: unfused), for the pack ``key`` when known (``fuse: auto`` sizes
    packs by their structure and batch size), from the dataset's shape."""
    from sweeper.train.data import load_dataset
    from sweeper.train.pack_trial import fuse_reason, pack_limit

    if spec.compute.fuse == "off" or fuse_reason(spec) is not None:
        return 1
    ds = load_dataset(spec.data)
    return pack_limit(spec, ds.x.shape[1:], len(ds.classes), key)


def _member(spec: SweepSpec, trial: optuna.Trial) -> Member:
    from sweeper.train.pack_trial import pack_key

    searched = space.suggest(trial, strategy_for(spec).distributions())
    params = space.full_params(spec, searched)
    seed = space.trial_seed(spec, params)
    return Member(trial, params, seed, pack_key(spec, params, seed))


def _claim_like(study: optuna.Study, spec: SweepSpec, key: Any, n: int, first: dict[str, Any]) -> list[optuna.Trial]:
    """Claim queued trials whose point trains in a pack with ``key``: up to ``n`` more configurations
    besides ``first`` (full params), each with its points that differ only in epochs, which the
    pack trains once (a searched ``epochs``; space.trial_seed)."""
    from sweeper.train.pack_trial import pack_key

    twins = "epochs" in spec.params and spec.seed_rule >= 2
    storage = oi.storage_of(study)
    groups: dict[str, list[optuna.trial.FrozenTrial]] = {space.but_epochs_key(first): []}
    window = TWIN_WINDOW
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if len(groups) > n:  # full: only the other-epoch points of its configurations still join
            window -= 1
            if not twins or window < 0:
                break
        point = oi.queued_params(t)
        if point is None:
            continue
        params = space.full_params(spec, point)
        if pack_key(spec, params, space.trial_seed(spec, params)) != key:
            continue
        same = space.but_epochs_key(params) if twins else str(oi.trial_id(t))
        if same in groups or len(groups) <= n:
            groups.setdefault(same, []).append(t)
    out: list[optuna.Trial] = []
    for t in (t for group in groups.values() for t in group):
        try:
            if storage.set_trial_state_values(oi.trial_id(t), state=TrialState.RUNNING):
                storage.set_trial_system_attr(oi.trial_id(t), OWNER_ATTR, owner_record())
                out.append(oi.trial_handle(study, oi.trial_id(t)))
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker claimed it first
    return out


def take(study: optuna.Study, spec: SweepSpec, first: optuna.Trial, owned: bool, k: int, room: int) -> list[optuna.Trial]:
    """``first`` (claimed or asked) and up to ``k - 1`` more trials for its pack: queued trials of
    its structure, or (a sampler's study, ``room`` trials left in the budget) newly asked ones."""
    if not owned:
        oi.storage_of(study).set_trial_system_attr(oi.trial_id(first), OWNER_ATTR, owner_record())
    if k <= 1:
        return [first]
    point = oi.queued_params(oi.storage_of(study).get_trial(oi.trial_id(first)))
    if point is not None or strategy_for(spec).queues_points:
        from sweeper.train.pack_trial import pack_key

        params = space.full_params(spec, point or {})
        key = pack_key(spec, params, space.trial_seed(spec, params))
        if key is None:
            return [first]
        if spec.compute.fuse == "auto":  # sized for this pack's structure and batch size
            k = pack_size(spec, key)
        return [first] + _claim_like(study, spec, key, k - 1, params)
    return [first] + [ask_new(study) for _ in range(max(0, min(k - 1, room)))]


def run(study: optuna.Study, trials: list[optuna.Trial], spec: SweepSpec) -> None:
    """Train ``trials`` (claimed, owner records stored) in packs by structure and tell each."""
    members: list[Member] = []
    try:
        with Heartbeat(study, *[oi.trial_id(t) for t in trials]):
            for trial in trials:
                try:
                    members.append(_member(spec, trial))
                except Exception as exc:
                    tell_outcome(study, trial, TrialState.FAIL, attrs={ERROR_ATTR: error_text(exc)})
            _run_members(study, spec, members)
    except KeyboardInterrupt:  # every member not yet told is queued again
        told = {oi.trial_id(m.trial) for m in members if m.told}
        for trial in trials:
            if oi.trial_id(trial) not in told:
                requeue_interrupted(study, trial)
        raise


def _run_members(study: optuna.Study, spec: SweepSpec, members: list[Member]) -> None:
    from sweeper.train.pack_trial import PackEntry

    def tell(m: Member, state: TrialState, value: float | None = None, attrs: dict[str, Any] | None = None) -> None:
        tell_outcome(study, m.trial, state, value, attrs)
        m.told = True

    groups: dict[Any, list[Member]] = {}
    may_repeat = strategy_for(spec).may_repeat()
    for m in members:
        if may_repeat:
            twin = completed_twin(study, m.trial.params, m.trial.number)
            if twin is not None:  # the same config trained before: same seed, same result
                tell(m, TrialState.COMPLETE, *outcome.duplicate(study, m.trial, twin))
                continue
        groups.setdefault(m.key, []).append(m)
    for key, group in groups.items():
        entries = [PackEntry(m.params, m.seed, outcome.pruning_hook(m.trial) if outcome.live(spec) else None) for m in group]
        try:
            _train(spec, entries, key)
        except Exception as exc:  # the pack itself failed (e.g. out of memory): each member says so
            for m in group:
                tell(m, TrialState.FAIL, attrs={ERROR_ATTR: error_text(exc)})
            continue
        for m, entry in zip(group, entries):
            result = entry.outcome
            if isinstance(result, optuna.TrialPruned):
                tell(m, TrialState.PRUNED)
            elif isinstance(result, BaseException) or result is None:
                tell(m, TrialState.FAIL, attrs={ERROR_ATTR: error_text(result or RuntimeError("no result"))})
            else:
                outcome.report_curve(spec, m.trial, result.curve)
                try:
                    tell(m, TrialState.COMPLETE, *outcome.completed(study, m.trial, spec, result))
                except Exception as exc:  # e.g. a metric an objective needs was not measured
                    tell(m, TrialState.FAIL, attrs={ERROR_ATTR: error_text(exc)})


def _train(spec: SweepSpec, entries: list[Any], key: Any) -> None:
    """One pack (key None: trials that cannot be fused, one standalone fit after the other)."""
    from sweeper.train.data import load_dataset
    from sweeper.train.pack_trial import run_pack
    from sweeper.train.runtime import configure_tensorflow
    from sweeper.train.trial import run_trial

    configure_tensorflow()
    ds = load_dataset(spec.data)
    if key is not None:
        run_pack(spec, ds, entries, key)
        return
    for entry in entries:
        try:
            entry.outcome = run_trial(spec, ds, entry.params, entry.seed, entry.on_epoch)
        except Exception as exc:
            entry.outcome = exc

