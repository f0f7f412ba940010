"""Deliver the winner: refit the best config(s) on train+validation, save, score, predict.

Refit uses the epochs the trial actually ran (early stopping picked them), since no
validation data is left to stop on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from sweeper import space
from sweeper.data import Dataset, image_shape
from sweeper.errors import DataError, SweeperError
from sweeper.spec import SweepSpec


@dataclass
class Refitted:
    trial_number: int
    params: dict[str, Any]
    model: Any  # keras.Model
    path: Path


def top_trials(study: optuna.Study, spec: SweepSpec, k: int) -> list[optuna.trial.FrozenTrial]:
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not done:
        raise SweeperError(f"study {spec.name!r} has no completed trial to refit")
    done.sort(key=lambda t: t.value, reverse=spec.direction == "maximize")
    return done[:k]


def refit(spec: SweepSpec, ds: Dataset, trial: optuna.trial.FrozenTrial, out_dir: Path) -> Refitted:
    """Train the trial's config on all labelled data and save it as a .keras file."""
    from sweeper.estimator import make_estimator

    params = space.full_params(spec, dict(trial.params))
    epochs_run = (trial.user_attrs.get("metrics") or {}).get("epochs_run")
    if epochs_run:
        params["epochs"] = int(epochs_run)
    import keras

    keras.utils.set_random_seed(space.trial_seed(spec, params))  # the trial's initial weights
    est = make_estimator(spec, params, None, [keras.callbacks.TerminateOnNaN()])
    est.fit(ds.x, ds.y)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"trial-{trial.number}.keras"
    est.model_.save(path)
    return Refitted(trial.number, params, est.model_, path)


def predict_proba(models: list[Any], x: np.ndarray) -> np.ndarray:
    """Mean softmax of the models (an ensemble of one is the model itself)."""
    return np.mean([m.predict(x, batch_size=1024, verbose=0) for m in models], axis=0)


def read_test_csv(path: str, shape: tuple[int, ...], id_column: str) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except Exception as exc:
        raise DataError(f"{path}: cannot read CSV ({exc})") from None
    ids = frame.pop(id_column).to_numpy() if id_column in frame.columns else np.arange(len(frame))
    pixels = frame.select_dtypes("number").to_numpy().astype("float32")
    if int(np.prod(shape)) != pixels.shape[1]:
        raise DataError(f"{path}: {pixels.shape[1]} pixel columns, the model expects {int(np.prod(shape))} "
                        f"({'x'.join(map(str, shape))}); is {id_column!r} the id column?")
    image_shape(pixels.shape[1], path)  # same inference as training data
    if pixels.max(initial=0) > 1.0:
        pixels /= 255.0
    return pixels.reshape(-1, *shape), ids


def write_submission(path: str, ids: np.ndarray, labels: np.ndarray, id_column: str, label_column: str) -> None:
    import pandas as pd

    pd.DataFrame({id_column: ids, label_column: labels}).to_csv(path, index=False)
