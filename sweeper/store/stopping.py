"""The stop rule (``stop: {patience, min_delta}``): whether a study's stored trials say that the
search has found its answer. Decided here once, from the trials alone, so every worker on every
host, the last line of run, show, ls, serve and the report read the same verdict.

The finished trials are read in the order they finished. A trial *changes the answer* when it
is completed, feasible, not a repeat of a point, and no trial of the reference front is within
``min_delta`` of being at least as good on every objective: with one objective, it beats the
reference best by more than ``min_delta``. Such a trial joins the reference (the members it
dominates leave); any other finished trial (a smaller gain, pruned, failed, over a constraint's
limit, a repeat) lengthens the run of trials in a row that changed nothing. As Keras's
EarlyStopping, the gain is measured from the reference, so small gains cannot creep on forever.
The study stops at the first trial that makes the run ``patience`` long, and stays stopped:
trials that finish later (another worker's) do not undo the verdict.

A study whose definition changed (store/studies.py ``grow``: a larger budget, another ``stop``)
counts its run again from the trials that finished after the change (a grid's points queued
before it included); the trials before still make the reference.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Any, Sequence

from optuna.trial import FrozenTrial, TrialState

from sweeper.config.sections import Stop
from sweeper.store.keys import DUPLICATE_OF_ATTR
from sweeper.store.pareto import is_feasible


@dataclass(frozen=True)
class StopRule:
    patience: int
    min_delta: float
    directions: tuple[str, ...]  # one per objective
    since: datetime.datetime | None = None  # the run counts trials that finished after this (a changed definition)

    def reason(self) -> str:
        """Why the study stopped, in the words every surface prints."""
        n = f"{self.patience} finished trial{'s' if self.patience > 1 else ''} in a row"
        if len(self.directions) > 1:
            within = f" (no objective better by more than {self.min_delta:g})" if self.min_delta else ""
            return f"stopped: {n} left the Pareto front unchanged{within}"
        if self.min_delta:
            return f"stopped: {n} improved the best by <= {self.min_delta:g}"
        return f"stopped: {n} did not improve the best"


LAST_COMPLETE = "last_complete"  # a revision's key: the latest completion before the change (ISO time)


def rule_for(stop: Stop | None, directions: Sequence[str], revisions: Sequence[Any] | None) -> StopRule | None:
    """The rule of a sweep's ``stop`` (None: it has none), counted from the latest revision that
    changed something (``revisions``: the study's stored ones, store/studies.py ``grow``; those
    stored before stop rules existed have no completion time, and count from the start)."""
    if stop is None:
        return None
    changed = [r for r in revisions or () if isinstance(r, dict) and r.get("changes")]
    since = None
    if changed and isinstance(changed[-1].get(LAST_COMPLETE), str):
        try:
            since = datetime.datetime.fromisoformat(changed[-1][LAST_COMPLETE])
        except ValueError:
            since = None
    return StopRule(stop.patience, stop.min_delta, tuple(directions), since)


_NEVER = datetime.datetime.max


def verdict(finished: Sequence[FrozenTrial], rule: StopRule) -> str | None:
    """``rule.reason()`` when the finished trials (those counted toward the budget) stopped the
    study, else None."""
    signs = [-1.0 if d == "maximize" else 1.0 for d in rule.directions]
    reference: list[list[float]] = []  # losses (smaller is better) of the reference front
    run = 0
    for t in sorted(finished, key=lambda t: (t.datetime_complete or _NEVER, t.number)):
        loss = _loss(t, signs)
        if loss is not None and not any(all(r[j] - rule.min_delta <= loss[j] for j in range(len(loss)))
                                        for r in reference):
            reference = [r for r in reference if not all(loss[j] <= r[j] for j in range(len(loss)))] + [loss]
            run = 0
        elif reference and (rule.since is None or (t.datetime_complete or _NEVER) > rule.since):
            run += 1
            if run >= rule.patience:
                return rule.reason()
    return None


def _loss(t: FrozenTrial, signs: list[float]) -> list[float] | None:
    """A trial's objective values as losses, or None when it cannot change the answer."""
    values = t.values
    if t.state != TrialState.COMPLETE or not values or len(values) != len(signs) \
            or t.user_attrs.get(DUPLICATE_OF_ATTR) is not None or is_feasible(t) is False \
            or not all(math.isfinite(v) for v in values):
        return None
    return [s * v for s, v in zip(signs, values)]
