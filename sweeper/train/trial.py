"""One trial: the one fit on each split (holdout or stratified k-fold) times each repeat, scored.
The fits run one after another; a trial of several reports its mean curve to the pruner while
its last fit trains (``mean_hook``).

The trial only trains and scores; the study loop stores what it returns.
"""

from __future__ import annotations

import contextvars
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable

import numpy as np

from sweeper.config.spec import SweepSpec
from sweeper.paths import study_dir
from sweeper.train.data import Dataset, splits
from sweeper.train.fit import EpochHook, fit_config, fit_seed
from sweeper.train.runtime import release_keras_state

__all__ = ["TrialResult", "FitRecord", "TrainedModel", "save_temp", "run_trial", "mean_hook", "EpochHook", "CURRENT_TRIAL"]


@dataclass
class TrainedModel:
    """One fit's trained model on its way to the artifact store (``artifacts: {keep: K}``): a
    temporary .keras file written right after the fit, or (a fused fit whose pack trained on past
    the weights it was scored with) how to make that model, called only when the trial is kept."""

    split: int
    repeat: int
    path: str | None = None
    make: Callable[[], Any] | None = None  # -> the keras.Model

    def file(self) -> str:
        """The .keras file, written now if it was not yet."""
        if self.path is None:
            if self.make is None:
                raise RuntimeError("this trained model was discarded")
            self.path, self.make = save_temp(self.make(), self.split, self.repeat).path, None
        return self.path

    def discard(self) -> None:
        """Delete the temporary file (and forget how to make it)."""
        self.make = None
        if self.path is not None:
            shutil.rmtree(os.path.dirname(self.path), ignore_errors=True)
            self.path = None


def save_temp(model: Any, split: int, repeat: int) -> TrainedModel:
    """``model`` written to a .keras file in a temporary folder of its own."""
    folder = tempfile.mkdtemp(prefix="sweeper-model-")
    path = os.path.join(folder, f"split{split}-repeat{repeat}.keras")
    try:
        model.save(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return TrainedModel(split, repeat, path)


@dataclass
class TrialResult:
    mean_test_score: float
    std_test_score: float
    split_scores: list[float]
    val_loss: float
    train_accuracy: float
    fit_time: float
    epochs_run: int
    n_params: int
    curve: list[float] = field(default_factory=list)  # per-epoch objective metric, mean over splits
    model: dict[str, Any] = field(default_factory=dict)  # facts read off the trained model (fit.model_facts)
    latency_ms: float | None = None  # mean over fits of ms per validation image (when measured)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)  # metric -> mean, std over fits
    # Each fit's trained model when the sweep keeps models (never stored in the metrics).
    models: list[TrainedModel] = field(default_factory=list, repr=False, compare=False)

    def as_attrs(self) -> dict[str, Any]:
        attrs = asdict(replace(self, models=[]))
        del attrs["models"]
        return attrs

    @classmethod
    def from_fits(cls, fits: list["FitRecord"]) -> "TrialResult":
        """The one aggregation of a trial's fits (splits x repeats), for every evaluator: means,
        stds, the mean curve (as long as the shortest fit's), the last fit's model facts."""
        scores = [float(f.score) for f in fits]
        stats = fit_stats(fits)
        width = min(len(f.curve) for f in fits)
        return cls(
            mean_test_score=float(np.mean(scores)),
            std_test_score=float(np.std(scores)),
            split_scores=scores,
            val_loss=float(np.mean([f.val_loss for f in fits])),
            train_accuracy=float(np.mean([f.train_accuracy for f in fits])),
            fit_time=float(np.mean([f.fit_time for f in fits])),
            epochs_run=int(max(f.epochs_run for f in fits)),
            n_params=fits[-1].n_params,
            curve=[float(np.mean([f.curve[e] for f in fits])) for e in range(width)],
            model=fits[-1].facts,
            latency_ms=stats["latency_ms"]["mean"] if "latency_ms" in stats else None,
            stats=stats,
        )


@dataclass
class FitRecord:
    """One fit's numbers (one split x repeat): what every evaluator reports per fit."""

    score: float  # the objective metric on validation, at the epoch the fit is scored on
    val_accuracy: float | None
    val_loss: float
    train_accuracy: float
    fit_time: float  # compute time of this fit (a pack's time shared out by the work each fit stands for)
    epochs_run: int
    n_params: int
    curve: list[float]  # per-epoch objective metric on validation
    facts: dict[str, Any] = field(default_factory=dict)  # how the trained model was built
    latency_ms: float | None = None

    @classmethod
    def of(cls, f: Any) -> "FitRecord":
        """From a fit_config result (train/fit.py Fitted)."""
        return cls(f.score, f.val_accuracy, f.val_loss, f.train_accuracy, f.fit_time, f.epochs_run, f.n_params,
                   f.curve, f.facts, f.latency_ms)


# The study loop names the trial being run (TensorBoard folders are per trial number).
CURRENT_TRIAL: contextvars.ContextVar[str | None] = contextvars.ContextVar("sweeper_trial", default=None)


def tensorboard_dir(spec: SweepSpec, tag: str, split: int, repeat: int) -> str | None:
    if not spec.callbacks.tensorboard:
        return None
    return str(study_dir(spec.name) / "tensorboard" / tag / f"split{split}-repeat{repeat}")


def run_trial(
    spec: SweepSpec,
    ds: Dataset,
    params: dict[str, Any],
    seed: int,
    on_epoch: EpochHook | None = None,
    tag: str | None = None,
) -> TrialResult:
    """Train and score one configuration on every split (x repeats) of the sweep's validation."""
    folds = splits(spec, ds)
    runs = [(i, r, tr, va) for i, (tr, va) in enumerate(folds) for r in range(spec.repeats)]
    tag = tag or CURRENT_TRIAL.get() or f"seed-{seed}"
    fits, models = [], []
    try:
        for n, (i, r, tr, va) in enumerate(runs):
            hook = mean_hook(on_epoch, list(fits)) if n == len(runs) - 1 else None  # the earlier fits train in full
            fitted = fit_config(spec, params, fit_seed(spec, seed, i, r), ds.x[tr], ds.y[tr], (ds.x[va], ds.y[va]),
                                log_dir=tensorboard_dir(spec, tag, i, r), on_epoch=hook)
            if spec.artifacts.active:  # the model goes to a file now, not along with the trial
                models.append(save_temp(fitted.estimator.model_, i, r))
            fitted.estimator = None  # keep the numbers, not the model
            fits.append(fitted)
    except BaseException:
        for m in models:
            m.discard()
        raise
    finally:
        if not spec.compute.reuse_models:
            release_keras_state()
    result = TrialResult.from_fits([FitRecord.of(f) for f in fits])
    result.models = models
    return result


def mean_hook(on_epoch: EpochHook | None, earlier: list[Any]) -> EpochHook | None:
    """The hook of a trial's last fit: each epoch's value as the mean over the trial's fits (the
    earlier ones' curves are known), for the epochs every earlier fit reached: the values of the
    trial's mean curve (``TrialResult.from_fits``), reported while the last fit trains."""
    if on_epoch is None or not earlier:
        return on_epoch
    width = min(len(f.curve) for f in earlier)

    def hook(epoch: int, value: float) -> None:
        if epoch < width:
            on_epoch(epoch, float(np.mean([f.curve[epoch] for f in earlier] + [value])))

    return hook


def fit_stats(fits: list[Any]) -> dict[str, dict[str, float]]:
    """Mean and std over a trial's fits (splits x repeats) of every metric an objective or a
    constraint may name (config/objectives.py OBJECTIVE_METRICS)."""
    per_fit = {
        "accuracy": [f.val_accuracy for f in fits], "loss": [f.val_loss for f in fits],
        "n_params": [f.n_params for f in fits], "fit_time": [f.fit_time for f in fits],
        "latency_ms": [f.latency_ms for f in fits],
    }
    return {k: {"mean": float(np.mean(v)), "std": float(np.std(v))}
            for k, v in per_fit.items() if all(x is not None for x in v)}
