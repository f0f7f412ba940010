"""Which trained models a study keeps (``artifacts: {keep: K}``), decided by the worker loop for
every evaluator whose results carry models (``TrialResult.models``: one temporary .keras file per
fit, or how to make it).

A completed trial that enters the kept set (the best K, with the trials completed so far) uploads
its fits' models before its tell, since Optuna takes no attr on a finished trial; the record of
its files is told with it. After every tell, trials pushed out of the kept set lose theirs. The
temporary files are deleted once the trial is told, kept or not. Two workers telling at once may
both keep a trial for a moment; the next tell of either removes what is then out.
"""

from __future__ import annotations

from typing import Any, Sequence

import optuna
from optuna.trial import TrialState

from sweeper.config.spec import SweepSpec
from sweeper.search import objectives
from sweeper.store import artifacts
from sweeper.store import optuna_internals as oi
from sweeper.store.keys import KEPT_ATTR


def models_of(result: Any) -> list[Any]:
    return list(getattr(result, "models", None) or [])


def kept_attrs(study: optuna.Study, spec: SweepSpec, trial: optuna.Trial, values: Sequence[float],
               result: Any) -> dict[str, Any]:
    """The attrs to tell with a completed trial: the record of its uploaded models when it enters
    the kept set (``{}`` otherwise). An upload that fails is recorded, and the trial completes."""
    models = models_of(result)
    if not spec.artifacts.active or not models:
        return {}
    constraints = objectives.constraint_values(spec, result)
    me = optuna.trial.create_trial(state=TrialState.COMPLETE, values=list(values), system_attrs={} if constraints
                                   is None else {oi.constraints_key(): list(constraints)})
    me.number = trial.number  # this trial as it is about to be told, ranked among those told
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.number != trial.number]
    if trial.number not in artifacts.kept_numbers(sorted([*done, me], key=lambda t: t.number), spec):
        return {}
    try:
        files = [(m.file(), {"split": m.split, "repeat": m.repeat}) for m in models]
        record = artifacts.upload(trial, artifacts.study_location(study), files, _data_facts(spec))
    except Exception as exc:  # a full disk: the trial's result stands, without its models
        from sweeper.store.trials import error_text

        record = {"error": error_text(exc)}
    return {KEPT_ATTR: record}


def after_tell(study: optuna.Study, spec: SweepSpec, result: Any) -> None:
    """The trial is told: delete its temporary files, and the kept models of trials pushed out."""
    discard(result)
    if spec.artifacts.active:
        artifacts.remove_pushed_out(study, spec)


def discard(result: Any) -> None:
    """A trial not told (Ctrl-C): its temporary files go."""
    for m in models_of(result):
        m.discard()


def _data_facts(spec: SweepSpec) -> dict[str, Any]:
    """What predicting with a kept model needs besides the model: class names, pixel scaling and
    image shape (so ``best --stored`` needs no training data)."""
    from sweeper.train.data import (
        load_dataset,  # loaded once per process: the trials' own
    )

    ds = load_dataset(spec.data)
    return {"classes": list(ds.classes), "pixel_divisor": float(ds.pixel_divisor), "shape": list(ds.shape)}
