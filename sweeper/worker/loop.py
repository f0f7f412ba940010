"""The worker loop: claim a batch, one prologue per trial, one evaluator call per pack, one tell
per trial; until the budget is met or the stop rule ends the study (both read from
``progress``, so every worker stops alike).

A batch is one trial, or (an evaluator that packs) a trial and the queued or newly asked trials
that train in its pack. Every trial stays an Optuna trial of its own: owner record and heartbeat
from the claim on, its params, seed, pruning hook, outcome. Ctrl-C re-queues every trial of the
batch not yet told. Queued suspects (their worker died while they ran) go first, alone, under a
supervisor (worker/supervise.py). Any number of loops (threads of one process excluded) may share
a study: claims are atomic, dead workers' trials are re-queued, a failed fit never stops the sweep.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from sweeper.config.spec import SweepSpec
from sweeper.errors import MaxFailuresReached
from sweeper.search import space
from sweeper.search.strategy import strategy_for
from sweeper.store import optuna_internals as oi
from sweeper.store.heartbeat import Heartbeat
from sweeper.store.keys import ERROR_ATTR
from sweeper.store.progress import Progress, progress
from sweeper.store.trials import (
    ask_new,
    claim_packmates,
    claim_waiting,
    completed_twin,
    error_text,
    reap_dead_trials,
    requeue_interrupted,
    requeue_mine,
    tell_outcome,
)
from sweeper.tracking import live
from sweeper.worker import keep, outcome, supervise
from sweeper.worker.evaluators import (
    Entry,
    Evaluator,
    TrialFunction,
    as_evaluator,
    for_spec,
)

__all__ = ["LoopOptions", "work", "run_batch", "run_one", "for_spec"]


@dataclass
class LoopOptions:
    max_failures: int | None = None
    deadline: float | None = None  # time.monotonic() value
    poll_s: float = 0.5
    stop: threading.Event | None = None
    storage_url: str | None = None  # how a supervised worker reaches the store (None: suspects run here)


SUSPECT_RETRY_S = 5.0  # after a supervised worker took no suspect, before starting another
REAP_EVERY_S = 10.0  # dead-trial checks cost SQL per call: not every trial (a claim-less worker checks each poll)


def work(study: optuna.Study, spec: SweepSpec, evaluator: Evaluator | TrialFunction | None = None,
         options: LoopOptions | None = None, on_trial: Callable[[Progress], None] | None = None) -> Progress:
    """Run trials until the study's budget is met or its stop rule ends it (or deadline / stop
    event / max failures)."""
    opts = options or LoopOptions()
    ev = as_evaluator(spec, evaluator)
    try:
        return _work(study, spec, ev, opts, on_trial)
    except KeyboardInterrupt:  # also between a claim and its batch's own Ctrl-C block
        requeue_mine(study)
        raise


def _work(study: optuna.Study, spec: SweepSpec, ev: Evaluator, opts: LoopOptions,
          on_trial: Callable[[Progress], None] | None) -> Progress:
    strategy = strategy_for(spec)
    last_reap = -float("inf")
    suspects_after = 0.0
    ran = False
    while True:
        if time.monotonic() - last_reap >= REAP_EVERY_S:
            reap_dead_trials(study)
            last_reap = time.monotonic()
        prog = progress(study, spec)
        if ran and on_trial is not None:
            on_trial(prog)
            ran = False
        if prog.done or (opts.stop is not None and opts.stop.is_set()):
            return prog
        if opts.deadline is not None and time.monotonic() >= opts.deadline:
            return prog
        if opts.max_failures is not None and prog.failed >= opts.max_failures:
            raise MaxFailuresReached(
                f"stopped: {prog.failed} trials failed (--max-failures {opts.max_failures}); "
                f"see 'sweeper show {spec.name}' for the reasons"
            )
        if prog.suspects and time.monotonic() >= suspects_after:
            if opts.storage_url is None:
                run_suspects_here(study, spec, ev)
            elif not supervise.run_suspects(study, spec, opts.storage_url):
                suspects_after = time.monotonic() + SUSPECT_RETRY_S  # none taken: claim others, poll
            ran = True
            continue
        batch, from_queue, alone = claim_batch(study, spec, ev, strategy, prog)
        if not batch:
            if prog.running + prog.waiting == 0:
                return prog  # nothing left that could still need this worker
            time.sleep(opts.poll_s)  # a running trial may die and come back queued
            last_reap = -float("inf")  # so look for dead ones on every poll
            continue
        if on_trial is not None:  # the progress bar shows the batch as running while it trains
            on_trial(dataclasses.replace(prog, running=prog.running + len(batch), waiting=prog.waiting - from_queue))
        run_batch(study, spec, ev, batch, alone)
        ran = True


def claim_batch(study: optuna.Study, spec: SweepSpec, ev: Evaluator, strategy: Any,
                prog: Progress) -> tuple[list[optuna.Trial], int, bool]:
    """A queued trial (or a newly asked one) and, when the evaluator packs, the trials that train
    in its pack: queued ones of its key, or (a sampler's study) new ones that share its pack
    (``ask_packmates``), up to what the pack holds and the budget's room.
    Returns the trials, how many came from the queue, and whether each trains alone."""
    first = claim_waiting(study) if prog.waiting > prog.suspects else None
    from_queue = int(first is not None)
    if first is None:
        if not strategy.can_ask(prog.finished, prog.running + prog.waiting, prog.budget):
            return [], 0, True
        first = ask_new(study)
    limit = ev.pack_limit()
    if limit <= 1:
        return [first], from_queue, True
    point = oi.queued_params(oi.storage_of(study).get_trial(oi.trial_id(first)))
    if point is not None or strategy.queues_points:
        params = space.full_params(spec, point or {})
        key = ev.pack_key(params, space.trial_seed(spec, params))
        if key is None:
            return [first], from_queue, False

        def key_of(p: dict[str, Any]) -> Any:
            return ev.pack_key(p, space.trial_seed(spec, p))

        mates = claim_packmates(study, spec, key_of, key, ev.pack_limit(key) - 1, params)
        return [first, *mates], from_queue + len(mates), False
    room = prog.budget - prog.finished - prog.running - prog.waiting - 1 if prog.budget else limit
    return [first, *ask_packmates(study, spec, ev, strategy, first, room)], from_queue, False


def ask_packmates(study: optuna.Study, spec: SweepSpec, ev: Evaluator, strategy: Any, first: optuna.Trial,
                  room: int) -> list[optuna.Trial]:
    """New trials (at most ``room``) that train in ``first``'s pack: the sampler picks their
    params with those that decide the pack (structure, batch size) set to ``first``'s, up to what
    that pack holds. Trials asked together learn nothing from one another, and trials of other
    packs would only train one small pack after another, with nothing learnt in between."""
    dists = strategy.distributions()
    searched = space.suggest(first, dists, spec.params)  # now, so its pack is known (the prologue gets the same)
    params = space.full_params(spec, searched)
    key = ev.pack_key(params, space.trial_seed(spec, params))
    if key is None:
        return []
    fixed = {name: searched[name] for name in _pack_deciding(spec, ev, dists, searched, key)}
    sampler = study.sampler
    mates = []
    for _ in range(max(0, min(ev.pack_limit(key) - 1, room))):
        trial = ask_new(study)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.sampler = optuna.samplers.PartialFixedSampler(fixed, sampler) if fixed else sampler
        try:
            space.suggest(trial, dists, spec.params)
        finally:
            study.sampler = sampler
        mates.append(trial)
    return mates


def _pack_deciding(spec: SweepSpec, ev: Evaluator, dists: dict[str, Any], searched: dict[str, Any],
                   key: Any) -> list[str]:
    """The searched params whose other values (choices, or a range's ends) put a trial in another pack."""
    out = []
    for name, value in searched.items():
        d = dists[name]
        others = list(d.choices) if hasattr(d, "choices") else [d.low, d.high]
        for other in others:
            p = space.full_params(spec, {**searched, name: other})
            if other != value and ev.pack_key(p, space.trial_seed(spec, p)) != key:
                out.append(name)
                break
    return out


@dataclass
class _Claimed:
    trial: optuna.Trial
    entry: Entry
    key: Any


def run_batch(study: optuna.Study, spec: SweepSpec, ev: Evaluator, trials: list[optuna.Trial],
              alone: bool = False) -> list[TrialState | None]:
    """Evaluate claimed trials (owner records stored) and tell each its outcome: one prologue per
    trial, one evaluator call per pack key (``alone``: every trial by itself), one tell per trial.
    Ctrl-C re-queues every trial not yet told and propagates."""
    told: dict[int, TrialState] = {}
    groups: dict[Any, list[_Claimed]] = {}

    def tell(trial: optuna.Trial, state: TrialState, value: Any = None, attrs: dict[str, Any] | None = None) -> None:
        told[oi.trial_id(trial)] = tell_outcome(study, trial, state, value, attrs)
        live.after_tell(study, spec, trial.number)  # the sweep's trackers (never raises)

    try:
        with Heartbeat(study, *[oi.trial_id(t) for t in trials]):
            for trial in trials:
                try:
                    claimed = _prologue(study, spec, ev, trial, alone, tell)
                except Exception as exc:
                    tell(trial, TrialState.FAIL, attrs={ERROR_ATTR: error_text(exc)})
                    continue
                if claimed is not None:
                    groups.setdefault(claimed.key, []).append(claimed)
            for key, group in groups.items():
                entries = [c.entry for c in group]
                _die_if_asked(entries)
                try:
                    ev.evaluate(entries, key)
                except Exception as exc:  # the pack itself failed (e.g. out of memory): each member says so
                    for e in entries:
                        e.outcome = exc
                for c in group:
                    _tell_result(study, spec, c, tell)
    except KeyboardInterrupt:  # anywhere after the claim, every trial not yet told is queued again
        for trial in trials:
            if oi.trial_id(trial) not in told:
                requeue_interrupted(study, trial)
        for group in groups.values():
            for c in group:
                keep.discard(c.entry.outcome)  # trained models of trials not told: temporary files
        raise
    return [told.get(oi.trial_id(t)) for t in trials]


def run_one(study: optuna.Study, trial: optuna.Trial, spec: SweepSpec,
            evaluator: Evaluator | TrialFunction | None = None) -> TrialState | None:
    """``run_batch`` for one claimed trial, trained alone."""
    return run_batch(study, spec, as_evaluator(spec, evaluator), [trial], alone=True)[0]


def _prologue(study: optuna.Study, spec: SweepSpec, ev: Evaluator, trial: optuna.Trial, alone: bool,
              tell: Callable[..., None]) -> _Claimed | None:
    """Suggest, full params, seed, pruning hook, pack key; None when the trial is a repeat of a
    completed point (told that point's result: same params, same seed, same result)."""
    strategy = strategy_for(spec)
    searched = space.suggest(trial, strategy.distributions(), spec.params)  # define-by-run
    params = space.full_params(spec, searched)
    seed = space.trial_seed(spec, params)
    if strategy.may_repeat():
        twin = completed_twin(study, searched, trial.number)
        if twin is not None:
            tell(trial, TrialState.COMPLETE, *outcome.duplicate(study, trial, twin))
            return None
    entry = Entry(params, seed, outcome.pruning_hook(spec, trial), f"trial-{trial.number}")
    return _Claimed(trial, entry, None if alone else ev.pack_key(params, seed))


def _tell_result(study: optuna.Study, spec: SweepSpec, c: _Claimed, tell: Callable[..., None]) -> None:
    result = c.entry.outcome
    if isinstance(result, optuna.TrialPruned):
        tell(c.trial, TrialState.PRUNED)
    elif isinstance(result, BaseException) or result is None:
        tell(c.trial, TrialState.FAIL, attrs={ERROR_ATTR: error_text(result or RuntimeError("no result"))})
    else:
        try:
            if hasattr(result, "curve"):
                hook = c.entry.on_epoch if isinstance(c.entry.on_epoch, outcome.PruningHook) else None
                outcome.report_curve(spec, c.trial, result.curve, hook)
            values, attrs = outcome.completed(study, c.trial, spec, result)
            attrs.update(keep.kept_attrs(study, spec, c.trial, values, result))  # uploaded while it runs
            tell(c.trial, TrialState.COMPLETE, values, attrs)
        except optuna.exceptions.UpdateFinishedTrialError:
            tell(c.trial, TrialState.FAIL)  # failed by another worker meanwhile: its verdict stands
        except Exception as exc:  # e.g. a metric an objective needs was not measured
            tell(c.trial, TrialState.FAIL, attrs={ERROR_ATTR: error_text(exc)})
        finally:
            keep.after_tell(study, spec, result)  # temporary files gone, models pushed out removed


FAULT_ENV = "SWEEPER_TEST_EXIT_ON"  # tests only: JSON params; the worker process ends when such a trial trains


def _die_if_asked(entries: list[Entry]) -> None:
    """A test's stand-in for a trial that kills its worker (native crash, OOM killer)."""
    raw = os.environ.get(FAULT_ENV)
    if raw and any(all(e.params.get(k) == v for k, v in json.loads(raw).items()) for e in entries):
        os._exit(137)


def run_suspects_here(study: optuna.Study, spec: SweepSpec, ev: Evaluator) -> int:
    """Claim queued suspects one at a time and train each alone; returns how many ran."""
    n = 0
    try:
        while (trial := claim_waiting(study, suspects=True)) is not None:
            run_batch(study, spec, ev, [trial], alone=True)
            n += 1
    except KeyboardInterrupt:  # also between the claim and the trial's own Ctrl-C block
        requeue_mine(study)
        raise
    return n
