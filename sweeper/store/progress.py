"""What a study's trials add up to: finished points, state counts, the best trials, and whether
the stop rule ended the study (store/stopping.py). Decided here once; the loop, the progress bar,
show, export, reports and refits all read it from here."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.config import conditions
from sweeper.config.spec import ParamSpec, SweepSpec, from_stored
from sweeper.errors import SweeperError
from sweeper.search import space
from sweeper.search.strategy import strategy_for
from sweeper.store import optuna_internals as oi
from sweeper.store.keys import (
    DUPLICATE_OF_ATTR,
    ERROR_ATTR,
    RETRY_OF_ATTR,
    RETRY_REASON_ATTR,
    REVISIONS_ATTR,
    SUSPECT_ATTR,
    WARM_ATTR,
    WORKER_DIED_ATTR,
)
from sweeper.store.pareto import first_value, is_feasible
from sweeper.store.stopping import StopRule, rule_for, verdict


def trial_point(t: FrozenTrial) -> dict[str, Any] | None:
    """The searched params of a trial: its queued point when it has one (a WAITING trial, or one
    whose worker died between two of its params' writes), else the params it stored."""
    fixed = oi.queued_params(t)
    if fixed and not set(fixed) <= set(t.params):
        return dict(fixed)
    if t.params:
        return dict(t.params)
    return dict(fixed) if fixed else None


def requeued_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Failed trials that were queued again (dead worker, Ctrl-C, --retry-failed). Derived from
    the re-runs themselves: a finished trial's own attributes can no longer be written."""
    return {int(t.user_attrs[RETRY_OF_ATTR]) for t in trials if RETRY_OF_ATTR in t.user_attrs}


def is_finished(t: FrozenTrial, requeued: set[int], searched: Mapping[str, ParamSpec] | None = None) -> bool:
    """Counts toward the budget: completed, pruned, or failed for its own reason: not re-queued,
    not failed because its worker died, and not one whose worker died before all of its params
    (of ``searched``, the ones that exist at its values) were stored."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    # A trial whose worker died is not finished even when nothing re-queued it (the reaper itself
    # may have been killed between failing it and queueing its point again).
    return t.state == TrialState.FAIL and t.number not in requeued and not t.user_attrs.get(WORKER_DIED_ATTR) \
        and (searched is None or not conditions.missing(searched, t.params))


def ranked(trials: Sequence[FrozenTrial], direction: str) -> list[FrozenTrial]:
    """Completed trials, best first by the (first) objective (a sampler's repeat of a point is
    left out: its twin counts; so is a trial over a constraint's limit)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and first_value(t) is not None
            and t.user_attrs.get(DUPLICATE_OF_ATTR) is None and is_feasible(t) is not False]
    return sorted(done, key=first_value, reverse=direction == "maximize")


def best_trial(study: optuna.Study, direction: str) -> FrozenTrial | None:
    top = ranked(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), direction)
    return top[0] if top else None


# The one vocabulary for what became of a trial (progress bar, show, ls, report, serve):
#   complete     trained and scored
#   duplicate    a repeat of another trial's point (``link``: that twin); a sampler's repeat
#                takes its twin's result and counts toward the budget, a grid point counts once
#   pruned       stopped early by the pruner
#   failed       failed for its own reason (``reason``); counts toward the budget
#   interrupted  stopped by Ctrl-C or a dead worker; its point runs again (``link``: the re-run)
#                and it does not count
#   running, queued
#   (a running or queued trial may also be a suspect: its worker died while it ran, so it runs
#   alone, supervised, and only a death seen then counts against it; ``reason``: why)
OUTCOMES = ("complete", "duplicate", "pruned", "failed", "interrupted", "running", "queued")
_RANK = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.FAIL: 2}


@dataclass(frozen=True)
class Outcome:
    number: int
    kind: str  # one of OUTCOMES
    link: int | None = None  # duplicate: its twin; interrupted: its re-run (None: not queued yet)
    reason: str | None = None  # failed, interrupted: why; running, queued: why it is a suspect


def outcomes(trials: Sequence[FrozenTrial], counts_points: bool,
             searched: Mapping[str, ParamSpec] | None = None) -> list[Outcome]:
    """What became of each trial, in trial order. ``counts_points`` (grids): a point counts once,
    by its best-ended trial (complete, else pruned, else failed; the first such); the others
    that ended on it are its duplicates."""
    requeued = requeued_numbers(trials)
    reruns: dict[int, FrozenTrial] = {}
    for t in trials:
        if RETRY_OF_ATTR in t.user_attrs:
            reruns.setdefault(int(t.user_attrs[RETRY_OF_ATTR]), t)
    keys: dict[int, str] = {}

    def point(t: FrozenTrial) -> str:  # (computed only where needed: the loop counts often)
        if t.number not in keys:
            keys[t.number] = space.params_key(trial_point(t) or {})
        return keys[t.number]

    first_at: dict[str, FrozenTrial] = {}
    if counts_points:
        for t in sorted(trials, key=lambda t: (_RANK.get(t.state, 9), t.number)):
            if is_finished(t, requeued, searched):
                first_at.setdefault(point(t), t)
    out = []
    for t in trials:
        if t.state == TrialState.RUNNING:
            out.append(Outcome(t.number, "running", reason=t.user_attrs.get(SUSPECT_ATTR)))
        elif t.state == TrialState.WAITING:
            out.append(Outcome(t.number, "queued", reason=t.user_attrs.get(SUSPECT_ATTR)))
        elif not is_finished(t, requeued, searched):
            rerun = reruns.get(t.number) or next(  # a dead worker's point queued again by resume
                (r for r in trials if r.number > t.number and RETRY_OF_ATTR not in r.user_attrs
                 and point(r) == point(t)), None)
            reason = t.user_attrs.get(ERROR_ATTR) or (rerun.user_attrs.get(RETRY_REASON_ATTR) if rerun else None)
            out.append(Outcome(t.number, "interrupted", rerun.number if rerun else None, reason))
        elif counts_points and first_at[point(t)].number != t.number:
            out.append(Outcome(t.number, "duplicate", first_at[point(t)].number))
        elif t.state == TrialState.COMPLETE and t.user_attrs.get(DUPLICATE_OF_ATTR) is not None:
            out.append(Outcome(t.number, "duplicate", int(t.user_attrs[DUPLICATE_OF_ATTR])))
        elif t.state == TrialState.FAIL:
            out.append(Outcome(t.number, "failed", reason=t.user_attrs.get(ERROR_ATTR)))
        else:
            out.append(Outcome(t.number, t.state.name.lower()))
    return out


@dataclass
class Progress:
    """Trial counts by outcome. ``finished`` (toward the budget) = complete + pruned + failed,
    + duplicate when ``duplicates_count`` (samplers: every trial asked counts), + warm when it does
    not (a grid's warm-started points are done; a sampler's budget counts only trials it asked);
    every trial row is in exactly one count (``complete``: trained here, ``warm``: completed trials
    added by the study's warm start, store/warm.py)."""

    finished: int
    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    budget: int | None
    best: float | None
    duplicate: int = 0
    interrupted: int = 0
    duplicates_count: bool = False
    suspects: int = 0  # of the queued ones: suspects, which run alone next
    stopped: str | None = None  # why the stop rule ended the study ("stopped: ..."), None: it did not
    warm: int = 0  # completed trials of an earlier study or file the study started with

    @property
    def done(self) -> bool:
        """Nothing more to run: the budget is met, or the stop rule ended the study."""
        return (self.budget is not None and self.finished >= self.budget) or self.stopped is not None

    @property
    def trials(self) -> int:
        """Every trial row of the study."""
        return (self.complete + self.warm + self.duplicate + self.pruned + self.failed + self.interrupted
                + self.running + self.waiting)

    def counts(self) -> str:
        """Every trial row in one count, e.g. '5 complete, 1 pruned, 1 failed; 1 running,
        2 queued; 1 interrupted and re-run (not counted)': the words every surface uses."""
        head = [f"{self.complete} complete", f"{self.pruned} pruned", f"{self.failed} failed"]
        if self.duplicate and self.duplicates_count:
            head.insert(1, f"{self.duplicate} duplicate")
        if self.warm and not self.duplicates_count:
            head.insert(1, f"{self.warm} warm-started")
        live = ", ".join(f"{n} {word}" for n, word in ((self.running, "running"), (self.waiting, "queued")) if n)
        tail = [live] if live else []
        if self.suspects:
            tail.append(f"{self.suspects} suspect (its worker died while it ran; it runs alone next)")
        if self.duplicate and not self.duplicates_count:
            tail.append(f"{self.duplicate} duplicate (a point that ended before, counted once)")
        if self.warm and self.duplicates_count:
            tail.append(f"{self.warm} warm-started (earlier trials, not counted)")
        if self.interrupted:
            tail.append(f"{self.interrupted} interrupted and re-run (not counted)")
        return ", ".join(head) + "".join("; " + t for t in tail)

    def text(self) -> str:
        """'7/10 finished (5 complete, 1 pruned, 1 failed); 1 running, ...': the finished trials
        (toward the budget) are the ones in brackets; a study the stop rule ended says why last."""
        head, _, tail = self.counts().partition("; ")
        return f"{self.finished}/{self.budget or '?'} finished ({head})" + (f"; {tail}" if tail else "") \
            + (f"; {self.stopped}" if self.stopped else "")


def tally(trials: Sequence[FrozenTrial], counts_points: bool, searched: Mapping[str, ParamSpec] | None, budget: int | None,
          direction: str, stop: StopRule | None = None) -> tuple[Progress, list[Outcome]]:
    """The counts and each trial's outcome, decided together (``progress`` for a sweeper study);
    ``stop``: the study's stop rule, judged on the trials counted as finished."""
    found = outcomes(trials, counts_points, searched)
    by = {k: 0 for k in OUTCOMES}
    warm = 0
    for t, o in zip(trials, found):
        by[o.kind] += 1
        warm += o.kind == "complete" and WARM_ATTR in t.user_attrs
    complete = by["complete"] - warm
    finished = complete + by["pruned"] + by["failed"] + (warm if counts_points else by["duplicate"])
    top = ranked(trials, direction)
    prog = Progress(finished, complete, by["pruned"], by["failed"], by["running"], by["queued"], budget,
                    first_value(top[0]) if top else None, duplicate=by["duplicate"], interrupted=by["interrupted"],
                    duplicates_count=not counts_points, warm=warm,
                    suspects=sum(1 for o in found if o.kind == "queued" and o.reason))
    if stop is not None:
        counted = {"complete", "pruned", "failed"} | (set() if counts_points else {"duplicate"})
        # As toward the budget: a sampler's warm-started trials are not counted, a grid's are.
        prog.stopped = verdict([t for t, o in zip(trials, found) if o.kind in counted
                                and (counts_points or WARM_ATTR not in t.user_attrs)], stop)
    return prog, found


def stored_tally(trials: Sequence[FrozenTrial], raw_spec: Any, name: str, direction: str,
                 revisions: Any = None) -> tuple[Progress, list[Outcome]]:
    """``tally`` for any study of a store (ls, serve): by its stored sweep definition (and its
    stored ``revisions``, where a stop rule's count starts); a study sweeper did not make (or whose
    definition cannot be read) by its trials alone, no budget."""
    spec = None
    if isinstance(raw_spec, dict):
        try:
            spec = from_stored(raw_spec, name)
        except SweeperError:
            spec = None
    if spec is None:
        return tally(trials, False, None, None, direction)
    return tally(trials, strategy_for(spec).counts_points, spec.params, spec.budget, spec.direction,
                 rule_for(spec.stop, spec.directions, revisions if isinstance(revisions, list) else None))


def progress(study: optuna.Study, spec: SweepSpec) -> Progress:
    return study_outcomes(study, spec)[0]


def study_outcomes(study: optuna.Study, spec: SweepSpec) -> tuple[Progress, list[Outcome]]:
    trials = study.get_trials(deepcopy=False)
    # The study's revisions are read only for a stop rule (one more query on every loop turn).
    rule = rule_for(spec.stop, spec.directions, study.user_attrs.get(REVISIONS_ATTR)) if spec.stop else None
    return tally(trials, strategy_for(spec).counts_points, spec.params, spec.budget, spec.direction, rule)


def revision_of(number: int, revisions: Sequence[dict[str, Any]]) -> int:
    """The definition revision (0 = the first) a grown study's trial ran under."""
    return sum(1 for r in revisions if number >= int(r.get("first_trial", 0)))
