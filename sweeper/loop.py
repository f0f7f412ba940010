"""The worker loop: claim or ask a trial, evaluate it, store the result; until the budget is met.

Any number of these loops (threads of one process excluded) may share a study: queued trials are
claimed atomically, dead workers' trials are re-queued, a failed fit never stops the sweep.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from sweeper import outcome, packs
from sweeper.config.spec import SweepSpec
from sweeper.errors import MaxFailuresReached, SweeperError
from sweeper.search import space
from sweeper.search.strategy import strategy_for
from sweeper.store import optuna_internals as oi
from sweeper.store.heartbeat import Heartbeat
from sweeper.store.keys import ERROR_ATTR, OWNER_ATTR
from sweeper.store.progress import Progress, progress
from sweeper.store.trials import (
    ask_new,
    claim_waiting,
    completed_twin,
    error_text,
    owner_record,
    reap_dead_trials,
    requeue_interrupted,
    tell_outcome,
)
from sweeper.train.fit import EpochHook
from sweeper.train.trial import CURRENT_TRIAL, TrialResult

Evaluate = Callable[[SweepSpec, dict[str, Any], int, "EpochHook | None"], "TrialResult | float"]


def keras_evaluate(spec: SweepSpec, params: dict[str, Any], seed: int, on_epoch: EpochHook | None) -> TrialResult:
    """The default trial: a scikeras KerasClassifier on the sweep's dataset (loaded once)."""
    from sweeper.train.data import load_dataset
    from sweeper.train.runtime import configure_tensorflow
    from sweeper.train.trial import run_trial

    configure_tensorflow()
    return run_trial(spec, load_dataset(spec.data), params, seed, on_epoch)


def resolve_evaluate(spec: SweepSpec) -> Evaluate:
    ref = spec.trial_function
    if not ref and spec.model.lower() == "autokeras":
        from sweeper.train import automl

        return automl.evaluator()  # an AutoKeras search per trial; refuses if the extra is missing
    if not ref:
        return keras_evaluate
    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise SweeperError(f"trial_function {ref!r}: cannot load ({exc})") from None


@dataclass
class LoopOptions:
    max_failures: int | None = None
    deadline: float | None = None  # time.monotonic() value
    poll_s: float = 0.5
    stop: threading.Event | None = None


def run_one(study: optuna.Study, trial: optuna.Trial, spec: SweepSpec, evaluate: Evaluate,
            owned: bool = False) -> TrialState:
    """Evaluate one claimed trial and store its outcome (``owned``: its owner record is stored
    already). Exceptions become a FAIL with the error text; Ctrl-C re-queues the trial and
    propagates. If another worker failed this trial in the meantime (a false stale heartbeat),
    its verdict stands and this worker goes on. A repeat of a completed point stores that
    point's result instead of training it again."""
    tid = oi.trial_id(trial)

    def finish(state: TrialState, value: float | None = None, attrs: dict[str, Any] | None = None) -> TrialState:
        return tell_outcome(study, trial, state, value, attrs)

    try:
        if not owned:
            oi.storage_of(study).set_trial_system_attr(tid, OWNER_ATTR, owner_record())
        with Heartbeat(study, tid):
            return _evaluate_claimed(study, trial, spec, evaluate, finish)
    except KeyboardInterrupt:  # anywhere after the claim, the trial is queued again
        requeue_interrupted(study, trial)
        raise


def _evaluate_claimed(study: optuna.Study, trial: optuna.Trial, spec: SweepSpec, evaluate: Evaluate,
                      finish: Callable[..., TrialState]) -> TrialState:
    """Suggest, train (or take a completed twin's result) and tell, for a claimed trial."""
    storage = oi.storage_of(study)
    tid = oi.trial_id(trial)
    try:
        searched = space.suggest(trial, strategy_for(spec).distributions())
        params = space.full_params(spec, searched)
        seed = space.trial_seed(spec, params)
        if strategy_for(spec).may_repeat():
            twin = completed_twin(study, searched, trial.number)
            if twin is not None:  # the same config trained before: same seed, same result
                return finish(TrialState.COMPLETE, *outcome.duplicate(study, trial, twin))
        token = CURRENT_TRIAL.set(f"trial-{trial.number}")
        try:
            result = evaluate(spec, params, seed, outcome.pruning_hook(trial) if outcome.live(spec) else None)
        finally:
            CURRENT_TRIAL.reset(token)
        if isinstance(result, TrialResult):
            outcome.report_curve(spec, trial, result.curve)
        return finish(TrialState.COMPLETE, *outcome.completed(study, trial, spec, result))
    except optuna.TrialPruned:
        return finish(TrialState.PRUNED)
    except optuna.exceptions.UpdateFinishedTrialError:
        return storage.get_trial(tid).state  # failed by another worker while running
    except Exception as exc:
        return finish(TrialState.FAIL, attrs={ERROR_ATTR: error_text(exc)})


REAP_EVERY_S = 10.0  # dead-trial checks cost SQL per call: not every trial (a claim-less worker checks each poll)


def work(study: optuna.Study, spec: SweepSpec, evaluate: Evaluate, options: LoopOptions | None = None,
         on_trial: Callable[[Progress], None] | None = None) -> Progress:
    """Run trials until the study's budget is met (or deadline / stop / max failures)."""
    opts = options or LoopOptions()
    strategy = strategy_for(spec)
    pack_limit = packs.pack_size(spec) if evaluate is keras_evaluate else 1
    last_reap = -float("inf")
    ran_one = False
    while True:
        if time.monotonic() - last_reap >= REAP_EVERY_S:
            reap_dead_trials(study)
            last_reap = time.monotonic()
        prog = progress(study, spec)
        if ran_one and on_trial is not None:
            on_trial(prog)
            ran_one = False
        if prog.done or (opts.stop is not None and opts.stop.is_set()):
            return prog
        if opts.deadline is not None and time.monotonic() >= opts.deadline:
            return prog
        if opts.max_failures is not None and prog.failed >= opts.max_failures:
            raise MaxFailuresReached(
                f"stopped: {prog.failed} trials failed (--max-failures {opts.max_failures}); "
                f"see 'sweeper show {spec.name}' for the reasons"
            )
        trial = claim_waiting(study) if prog.waiting else None
        owned = False
        if trial is None:
            in_flight = prog.running + prog.waiting
            if not strategy.can_ask(prog.finished, in_flight, prog.budget):
                if in_flight == 0:
                    return prog  # nothing left that could still need this worker
                time.sleep(opts.poll_s)  # a running trial may die and come back queued
                last_reap = -float("inf")  # so look for dead ones on every poll
                continue
            trial, owned = ask_new(study), True
        if pack_limit > 1:  # fused: this trial and up to K - 1 more of its structure, as one model
            room = prog.budget - prog.finished - prog.running - prog.waiting - 1 if prog.budget else pack_limit
            batch = packs.take(study, spec, trial, owned, pack_limit, room)
            if on_trial is not None:
                on_trial(dataclasses.replace(prog, running=prog.running + len(batch),
                                             waiting=prog.waiting - (0 if owned else len(batch))))
            packs.run(study, batch, spec)
            ran_one = True
            continue
        if on_trial is not None:  # the progress bar shows this trial as running while it trains
            on_trial(dataclasses.replace(prog, running=prog.running + 1,
                                         waiting=prog.waiting - (0 if owned else 1)))
        run_one(study, trial, spec, evaluate, owned)
        ran_one = True
