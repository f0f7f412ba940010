"""Kept models in tests: a tiny sweep run through ``sweeper run``, and the check that a kept
model gets right, on its own validation split, the images its trial's stored score counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import optuna
from conftest import write_sweep
from optuna.trial import FrozenTrial

from sweeper.store import optuna_internals as oi
from sweeper.store.keys import KEPT_ATTR, REMOVED_PREFIX


def url_of(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


def run(tmp_path: Path, name: str, **overrides: Any) -> tuple[optuna.Study, Any]:
    """``sweeper run`` of write_sweep's tiny sweep (mlp, 400 digits, 2 epochs), changed by ``overrides``."""
    import sweeper
    from sweeper.cli import main

    path = write_sweep(tmp_path / f"{name}.yaml", name=name, **overrides)
    assert main(["run", str(path), "--no-report", "--quiet"]) == 0
    sweep = sweeper.load(name, url_of(tmp_path))
    return sweep.study, sweep


def kept_ids(t: FrozenTrial) -> list[str]:
    return [f["artifact_id"] for f in (t.user_attrs.get(KEPT_ATTR) or {}).get("fits", [])]


def kept_now(study: optuna.Study) -> list[FrozenTrial]:
    """The trials whose models are in the store now (recorded, not removed)."""
    return [t for t in study.get_trials() if kept_ids(t) and REMOVED_PREFIX + str(t.number) not in study.user_attrs]


def assert_right_on_own_split(sweep: Any, t: FrozenTrial, models: Sequence[Any]) -> None:
    """Each of the trial's kept fits' ``models`` (in the order of its record) gets right, on its
    own validation split, the images its stored split score counts; and has the trial's size."""
    from sweeper.train.data import load_dataset, splits

    ds = load_dataset(sweep.spec.data)
    folds = splits(sweep.spec, ds)
    fits = t.user_attrs[KEPT_ATTR]["fits"]
    scores = t.user_attrs["metrics"]["split_scores"]
    assert len(fits) == len(scores) == len(models)
    for fit, score, model in zip(fits, scores, models):
        assert model.count_params() == t.user_attrs["metrics"]["n_params"]
        va = folds[fit["split"]][1]
        right = int(np.sum(model.predict(ds.x[va], verbose=0).argmax(1) == ds.y[va]))
        assert right == round(score * len(va)) and abs(right / len(va) - score) < 1e-6, (t.number, fit)


def dangling(study: optuna.Study, exists: Any) -> list[tuple[int, str]]:
    """(trial, id) of every artifact id a trial names (sweeper's record or Optuna's ``artifacts:ID``
    attrs) whose file ``exists(id)`` denies and whose removal the study does not record."""
    out = []
    for t in study.get_trials():
        removed = set(study.user_attrs.get(REMOVED_PREFIX + str(t.number)) or [])
        for artifact_id in dict.fromkeys(kept_ids(t) + oi.artifact_ids(t)):
            if artifact_id not in removed and not exists(artifact_id):
                out.append((t.number, artifact_id))
    return out
