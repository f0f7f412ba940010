"""The run, resume and work journeys, written once for the CLI and the notebook API: open (or
create, or grow) a study, mend it (dead trials re-queued, grid points queued, failed ones retried),
and work it in this process with this worker's sampler salt."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

import optuna

from sweeper.config.spec import SweepSpec
from sweeper.errors import SweeperError
from sweeper.search.strategy import strategy_for
from sweeper.store import artifacts, warm
from sweeper.store.keys import ARTIFACTS_ATTR
from sweeper.store.pareto import constraints_func
from sweeper.store.placement import set_worker_index
from sweeper.store.progress import Progress
from sweeper.store.storage import make_storage, study_lock
from sweeper.store.studies import create_or_load, load, with_trials
from sweeper.store.trials import (
    queue_points,
    reap_dead_trials,
    retry_failed,
    worker_salt,
)
from sweeper.tracking import live
from sweeper.worker import loop


def open_run(spec: SweepSpec, url: str, say: Callable[[str], None] | None = None) -> optuna.Study:
    """``run``: the sweep's study, created (warm start added, grid queued), continued or grown. A
    dataset that cannot load, kept models with nowhere to go, an MLflow tracking URI that cannot
    be reached, or a warm start that cannot be made, stop here, before any study exists.
    ``say``: where the warm start's line goes."""
    location = artifacts.store_for(spec, url) if spec.artifacts.active else None
    if not spec.trial_function:
        from sweeper.train.data import check_data

        check_data(spec)
    live.check(spec)  # an MLflow tracking URI that cannot be reached: refused before any study exists
    study = create_or_load(spec, make_storage(url), say)
    if location is not None:
        artifacts.record_location(study, location)  # where every worker of the study keeps models
    live.start(study, spec)  # the study's MLflow parent run, TensorBoard's hparams config
    return study


@dataclass
class Mended:
    reaped: int
    queued: int
    retried: int

    def text(self, name: str) -> str:
        return (f"resuming {name}: {self.reaped} dead trial(s) re-queued, {self.queued} grid point(s) queued, "
                f"{self.retried} failed trial(s) queued again")


def open_resume(name: str, url: str, trials: int | None = None,
                retry: bool = False, say: Callable[[str], None] | None = None) -> tuple[optuna.Study, SweepSpec, Mended]:
    """``resume``: the stored study, its budget raised to ``trials``, an unfinished warm start
    mended, dead trials re-queued, grid points queued, and (``retry``) its failed points queued
    again."""
    storage = make_storage(url, must_exist=True)
    study, spec = load(name, storage)
    if spec.artifacts.active:  # the store run recorded, else the sweep's; an S3 bucket must answer
        artifacts.record_location(study, artifacts.check_store(study.user_attrs.get(ARTIFACTS_ATTR))
                                  if study.user_attrs.get(ARTIFACTS_ATTR) else artifacts.store_for(spec, url))
    with study_lock(storage, spec.name):
        if trials is not None:
            if trials < 1:
                raise SweeperError(f"--trials: {trials} must be >= 1")
            spec = with_trials(study, spec, trials)
        warm.finish(study, spec, storage, say)
        mended = Mended(reap_dead_trials(study), queue_points(study, spec), retry_failed(study) if retry else 0)
        if spec.artifacts.active:  # files of trials reaped just now, whose worker died uploading them
            artifacts.remove_pushed_out(study, spec)
    return study, spec, mended


def work_here(study: optuna.Study, spec: SweepSpec, url: str | None, index: int = 0,
              max_failures: int | None = None, deadline: float | None = None,
              on_trial: Callable[[Progress], None] | None = None, stop: threading.Event | None = None) -> Progress:
    """Work the study in this process as worker ``index`` (its sampler salt) until the budget is
    met; ``url`` lets it start a supervised worker for suspects. The index goes into every claimed
    trial's placement."""
    set_worker_index(index)
    study.sampler = strategy_for(spec).sampler(worker_salt(study, index), constraints_func(spec))
    options = loop.LoopOptions(max_failures=max_failures, deadline=deadline, storage_url=url, stop=stop)
    return loop.work(study, spec, loop.for_spec(spec), options, on_trial)
