"""Deliver the winner, through the one fit (train/fit.py): a stored trial refit on its own split
(the best-trial page: the same computation, so the same score), or on train+validation (``best``:
the same initial weights, saved as .keras, scored on the test set, written as a submission); or,
without training, the models kept while it ran (``best --stored``, ``Sweep.model``).

The refit on all labelled data trains for the epochs the trial ran (early stopping picked them),
since no validation data is left to stop on.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeper.config.spec import SweepSpec
from sweeper.errors import DataError, SweeperError
from sweeper.search.space import full_params, trial_seed
from sweeper.store.artifacts import Kept, kept
from sweeper.store.keys import KEPT_ATTR, METRICS_ATTR
from sweeper.store.pareto import first_value, pareto_front
from sweeper.store.progress import ranked
from sweeper.train.data import Dataset, image_shape, splits
from sweeper.train.fit import fit_config, fit_seed, metric_key
from sweeper.train.fused.trials import is_fused, refit_member


@dataclass
class Refitted:
    trial_number: int
    params: dict[str, Any]
    model: Any  # keras.Model
    path: Path


def top_trials(study: optuna.Study, spec: SweepSpec, k: int, number: int | None = None) -> list[FrozenTrial]:
    """The ``k`` best trials by the objective, or trial ``number``. With several objectives there
    is no single best: without ``number`` the Pareto trials are named and nothing is refit."""
    trials = study.get_trials(deepcopy=False)
    if number is not None:
        found = [t for t in trials if t.number == number]
        if not found:
            raise SweeperError(f"--trial: study {spec.name!r} has no trial {number} (trials 0 to {len(trials) - 1})")
        if found[0].state != TrialState.COMPLETE:
            raise SweeperError(f"--trial: trial {number} is {found[0].state.name.lower()}; only a completed trial "
                               "can be refit")
        return found
    if spec.multi_objective:
        front = pareto_front(trials, spec.directions)
        raise SweeperError(f"study {spec.name!r} has {len(spec.objectives)} objectives "
                           f"({', '.join(spec.objective_names)}), so no single best trial: pick one with --trial N "
                           f"(Pareto trials: {', '.join(str(t.number) for t in front) or 'none yet'})")
    done = ranked(trials, spec.direction)
    if not done:
        raise SweeperError(f"study {spec.name!r} has no completed trial to refit")
    return done[:k]


def refit(spec: SweepSpec, ds: Dataset, trial: FrozenTrial, out_dir: Path) -> Refitted:
    """Train the trial's config on all labelled data from its initial weights; save a .keras file."""
    params = full_params(spec, dict(trial.params))
    seed = fit_seed(spec, trial_seed(spec, params))  # the trial's (split 0) seed: the same initial weights
    epochs_run = (trial.user_attrs.get(METRICS_ATTR) or {}).get("epochs_run")
    train_params = {**params, "epochs": int(epochs_run)} if epochs_run else params
    if is_fused(trial.user_attrs.get(METRICS_ATTR)):  # trained in a pack: refit as a pack of one
        model = refit_member(spec, ds, params, seed, None, None, epochs=train_params.get("epochs")).model
    else:
        model = fit_config(spec, train_params, seed, ds.x, ds.y, None).estimator.model_
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"trial-{trial.number}.keras"
    model.save(path)
    return Refitted(trial.number, params, model, path)


@dataclass
class SplitRefit:
    """A stored trial trained again on its first split with its own seed (or its kept model of that
    split, loaded), and what the best-trial page draws from it."""

    trial_number: int
    params: dict[str, Any]  # searched params
    seed: int
    stored_score: float  # the trial's stored score on this split
    score: float  # the refit's score on it (equal on CPU)
    classes: tuple[str, ...]
    x_val: np.ndarray
    true: np.ndarray
    pred: np.ndarray
    matrix: np.ndarray
    history: dict[str, list[float]]
    sample: np.ndarray
    before: np.ndarray | None  # first conv layer's maps of ``sample`` before and after training
    after: np.ndarray | None
    conv: str | None
    n_train: int
    n_val: int
    n_params: int
    folds: int
    source: str = "refit"  # "refit": trained again here; "kept model": the trial's own, loaded (nothing trained)


def _first_conv(model: Any) -> Any | None:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            return layer
    return None


def _maps(model: Any, layer: Any, image: np.ndarray) -> np.ndarray:
    """The layer's output for one image: a sub-model from the input to that layer."""
    import keras

    probe = keras.Model(model.inputs, layer.output)
    return np.asarray(probe.predict(image[None], verbose=0))[0]


def refit_on_split(spec: SweepSpec, ds: Dataset, trial: FrozenTrial) -> SplitRefit:
    """Train ``trial`` again on the first split of the sweep's validation, as the trial did."""
    tr, va = splits(spec, ds)[0]
    params = full_params(spec, dict(trial.params))
    seed = fit_seed(spec, trial_seed(spec, params))
    sample = ds.x[va][0]
    probe: dict[str, Any] = {}

    def before_training(model: Any) -> None:
        conv = _first_conv(model)
        probe["conv"] = conv
        probe["before"] = _maps(model, conv, sample) if conv is not None else None

    if is_fused(trial.user_attrs.get(METRICS_ATTR)):  # trained in a pack: the same computation alone
        again = refit_member(spec, ds, params, seed, tr, va)
        before_training(again.initial)
        model, history, score, n_params = again.model, again.history, again.score, again.n_params
        pred = np.argmax(model.predict(ds.x[va], batch_size=1024, verbose=0), axis=-1)
    else:
        fitted = fit_config(spec, params, seed, ds.x[tr], ds.y[tr], (ds.x[va], ds.y[va]), on_built=before_training)
        model, history, score, n_params = fitted.estimator.model_, fitted.history, fitted.score, fitted.n_params
        pred = np.asarray(fitted.estimator.predict(ds.x[va])).astype(int).ravel()
    conv = _first_conv(model)
    after = _maps(model, conv, sample) if conv is not None else None
    pred = np.asarray(pred).astype(int).ravel()
    true = ds.y[va].astype(int)
    matrix = np.zeros((ds.n_classes, ds.n_classes), dtype=int)
    np.add.at(matrix, (true, pred), 1)
    metrics = trial.user_attrs.get(METRICS_ATTR) or {}
    stored = (metrics.get("split_scores") or [first_value(trial)])[0]
    return SplitRefit(
        trial.number, dict(trial.params), seed, float(stored), float(score), ds.classes, ds.x[va], true,
        pred, matrix, history, sample, probe.get("before"), after,
        conv.name if conv is not None else None, len(tr), len(va), n_params, len(splits(spec, ds)),
    )


def kept_on_split(study: optuna.Study, spec: SweepSpec, ds: Dataset, trial: FrozenTrial) -> SplitRefit | None:
    """The trial's kept model of its first fit (``artifacts: {keep: K}``) scored on that fit's
    validation split, nothing trained; None when it has none (not kept, removed, missing). The
    curves are the ones the trial stored (its validation metric per epoch, mean over its fits)."""
    if not (trial.user_attrs.get(KEPT_ATTR) or {}).get("fits"):
        return None
    try:
        found, models, _ = load_kept(study, spec, trial.number, first_only=True)
    except SweeperError:
        return None
    model, fit = models[0], found.fits[0]
    tr, va = splits(spec, ds)[fit["split"]]
    proba = np.asarray(model.predict(ds.x[va], batch_size=1024, verbose=0))
    true = ds.y[va].astype(int)
    pred = proba.argmax(axis=-1).astype(int)
    if spec.metric == "accuracy":
        score = float(np.mean(pred == true))
    else:  # Keras's sparse categorical cross-entropy, as val_loss measures it
        score = float(-np.mean(np.log(np.clip(proba[np.arange(len(true)), true], 1e-7, 1.0))))
    matrix = np.zeros((ds.n_classes, ds.n_classes), dtype=int)
    np.add.at(matrix, (true, pred), 1)
    metrics = trial.user_attrs.get(METRICS_ATTR) or {}
    stored = (metrics.get("split_scores") or [first_value(trial)])[0]
    conv = _first_conv(model)
    sample = ds.x[va][0]
    after = _maps(model, conv, sample) if conv is not None else None
    params = full_params(spec, dict(trial.params))
    return SplitRefit(
        trial.number, dict(trial.params), fit_seed(spec, trial_seed(spec, params), fit["split"], fit["repeat"]),
        float(stored), score, ds.classes, ds.x[va], true, pred, matrix,
        {metric_key(spec): list(metrics.get("curve") or [])}, sample, None, after,
        conv.name if conv is not None else None, len(tr), len(va), model.count_params(), len(splits(spec, ds)),
        source="kept model",
    )


def best_split_refit(study: optuna.Study, spec: SweepSpec) -> SplitRefit | None:
    """The best trial on its split for the best-trial page: its kept model when it has one
    (nothing trained), else refit (None: nothing to refit)."""
    if spec.trial_function:
        return None
    done = ranked(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), spec.direction)
    if not done:
        return None
    from sweeper.train.data import load_dataset
    from sweeper.train.runtime import configure_tensorflow, release_keras_state

    configure_tensorflow()
    try:
        ds = load_dataset(spec.data)
        return kept_on_split(study, spec, ds, done[0]) or refit_on_split(spec, ds, done[0])
    finally:
        release_keras_state()


def predict_proba(models: list[Any], x: np.ndarray) -> np.ndarray:
    """Mean softmax of the models (an ensemble of one is the model itself)."""
    return np.mean([m.predict(x, batch_size=1024, verbose=0) for m in models], axis=0)


def ensemble_proba(groups: list[list[Any]], x: np.ndarray) -> np.ndarray:
    """Mean over trials of each trial's mean softmax over its models (its k-fold or repeat fits)."""
    return np.mean([predict_proba(g, x) for g in groups], axis=0)


def load_kept(study: optuna.Study, spec: SweepSpec, number: int, out_dir: Path | None = None,
              first_only: bool = False) -> tuple[Kept, list[Any], list[Path]]:
    """Trial ``number``'s kept models (``artifacts: {keep: K}``), one per fit (or only the first),
    copied to ``out_dir`` as .keras files (None: a temporary folder) and loaded; nothing is
    trained. A one-line ``SweeperError`` names what is missing."""
    import tempfile

    found = kept(study, spec, number)  # what is missing is said before TensorFlow loads
    import keras

    import sweeper.train.optimizers  # noqa: F401  (registers RAdam, which a compiled model may name)

    if first_only:
        found = replace(found, fits=found.fits[:1])
    with tempfile.TemporaryDirectory(prefix="sweeper-kept-") as scratch:
        paths = found.download(out_dir or Path(scratch))
        models = []
        for path in paths:
            try:
                models.append(keras.models.load_model(path))
            except Exception as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise SweeperError(f"trial {number}'s kept model {path} cannot be loaded ({first})") from None
    return found, models, paths if out_dir is not None else []


def read_test_csv(path: str, shape: tuple[int, ...], pixel_divisor: float, id_column: str) -> tuple[np.ndarray, np.ndarray]:
    """Unlabelled images of a Kaggle-style test CSV, shaped and scaled as the training images
    (``shape``, ``pixel_divisor``: the dataset's)."""
    import pandas as pd

    shape = tuple(shape)
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
    pixels /= pixel_divisor
    return pixels.reshape(-1, *shape), ids


def write_submission(path: str, ids: np.ndarray, labels: np.ndarray, id_column: str, label_column: str) -> None:
    import pandas as pd

    pd.DataFrame({id_column: ids, label_column: labels}).to_csv(path, index=False)
