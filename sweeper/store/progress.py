"""What a study's trials add up to: finished points, state counts, the best trials. Decided here
once; the loop, the progress bar, show, export, reports and refits all read it from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.config.spec import SweepSpec
from sweeper.search import space
from sweeper.search.strategy import strategy_for
from sweeper.store.keys import DUPLICATE_OF_ATTR, RETRY_OF_ATTR, WORKER_DIED_ATTR


def trial_point(t: FrozenTrial) -> dict[str, Any] | None:
    """The searched params of a trial: its queued point when it has one (a WAITING trial, or one
    whose worker died between two of its params' writes), else the params it stored."""
    fixed = t.system_attrs.get("fixed_params")
    if fixed and not set(fixed) <= set(t.params):
        return dict(fixed)
    if t.params:
        return dict(t.params)
    return dict(fixed) if fixed else None


def requeued_numbers(trials: Sequence[FrozenTrial]) -> set[int]:
    """Failed trials that were queued again (dead worker, Ctrl-C, --retry-failed). Derived from
    the re-runs themselves: a finished trial's own attributes can no longer be written."""
    return {int(t.user_attrs[RETRY_OF_ATTR]) for t in trials if RETRY_OF_ATTR in t.user_attrs}


def is_finished(t: FrozenTrial, requeued: set[int], searched: set[str] | None = None) -> bool:
    """Counts toward the budget: completed, pruned, or failed for its own reason: not re-queued,
    not failed because its worker died, and not one whose worker died before all of its params
    (``searched``) were stored."""
    if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
        return True
    # A trial whose worker died is not finished even when nothing re-queued it (the reaper itself
    # may have been killed between failing it and queueing its point again).
    return t.state == TrialState.FAIL and t.number not in requeued and not t.user_attrs.get(WORKER_DIED_ATTR) \
        and (searched is None or searched <= set(t.params))


def ranked(trials: Sequence[FrozenTrial], direction: str) -> list[FrozenTrial]:
    """Completed trials, best first (a sampler's repeat of a point is left out: its twin counts)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None
            and t.user_attrs.get(DUPLICATE_OF_ATTR) is None]
    return sorted(done, key=lambda t: t.value, reverse=direction == "maximize")


def best_trial(study: optuna.Study, direction: str) -> FrozenTrial | None:
    top = ranked(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), direction)
    return top[0] if top else None


@dataclass
class Progress:
    finished: int
    complete: int
    pruned: int
    failed: int
    running: int
    waiting: int
    budget: int | None
    best: float | None

    @property
    def done(self) -> bool:
        return self.budget is not None and self.finished >= self.budget


def progress(study: optuna.Study, spec: SweepSpec) -> Progress:
    trials = study.get_trials(deepcopy=False)
    requeued = requeued_numbers(trials)
    by = {s: 0 for s in TrialState}
    finished = 0
    points: set[str] = set()
    counts_points = strategy_for(spec).counts_points
    searched = set(spec.params)
    for t in trials:
        by[t.state] += 1
        if is_finished(t, requeued, searched):
            if counts_points:
                points.add(space.params_key(trial_point(t) or {}))
            finished += 1
    if counts_points:
        finished = len(points)  # each grid point counts once, however it ended
    top = ranked(trials, spec.direction)
    failed = sum(1 for t in trials if t.state == TrialState.FAIL and is_finished(t, requeued, searched))
    return Progress(
        finished, by[TrialState.COMPLETE], by[TrialState.PRUNED], failed,
        by[TrialState.RUNNING], by[TrialState.WAITING], spec.budget, top[0].value if top else None,
    )


def revision_of(number: int, revisions: Sequence[dict[str, Any]]) -> int:
    """The definition revision (0 = the first) a grown study's trial ran under."""
    return sum(1 for r in revisions if number >= int(r.get("first_trial", 0)))
