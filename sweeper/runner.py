"""One trial: build the estimator, fit on each split (holdout or stratified k-fold), score.

The runner only trains and scores; the study loop stores what it returns.
"""

from __future__ import annotations

import contextvars
import functools
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from sweeper.data import Dataset
from sweeper.errors import TrialError
from sweeper.reuse import fit_estimator, purge_gradient_registry
from sweeper.spec import SweepSpec

EpochHook = Callable[[int, float], None]


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

    def as_attrs(self) -> dict[str, Any]:
        return asdict(self)


_configured = False


def configure_tensorflow(deterministic: bool = True) -> None:
    """Once per worker process: quiet import, GPU memory growth or cap, threads, op determinism
    on CPU (on GPUs determinism costs speed; the seeds still fix initial weights)."""
    global _configured
    if _configured:
        return
    from sweeper.devices import configure_worker_devices
    from sweeper.tfimport import tensorflow

    tf = tensorflow()
    purge_gradient_registry()  # first call: remember TensorFlow's own registry entries
    configure_worker_devices(tf)
    if deterministic and not tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()
    _configured = True


@functools.lru_cache(maxsize=8)
def _splits(n: int, holdout: float | None, kfold: int | None, seed: int, y_bytes: bytes) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    from sklearn.model_selection import StratifiedKFold, train_test_split

    y = np.frombuffer(y_bytes, dtype="int32")
    idx = np.arange(n)
    if kfold:
        return tuple(StratifiedKFold(kfold, shuffle=True, random_state=seed).split(idx, y))
    tr, va = train_test_split(idx, test_size=holdout, stratify=y, random_state=seed)
    return ((tr, va),)


def splits(spec: SweepSpec, ds: Dataset) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Train/validation indices, stratified and shuffled (mnist5k arrives sorted by label)."""
    return _splits(len(ds.y), spec.holdout, spec.kfold, spec.seed, ds.y.astype("int32").tobytes())


class _EpochCallback:
    """Keras callback forwarding each epoch's validation metric (for pruning and live curves)."""

    def __new__(cls, metric: str, hook: EpochHook) -> Any:
        import keras

        key = "val_accuracy" if metric == "accuracy" else "val_loss"

        class Forward(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                value = (logs or {}).get(key)
                if value is not None:
                    hook(epoch, float(value))

        return Forward()


# The study loop names the trial being run (TensorBoard folders are per trial number).
CURRENT_TRIAL: contextvars.ContextVar[str | None] = contextvars.ContextVar("sweeper_trial", default=None)


def run_trial(
    spec: SweepSpec,
    ds: Dataset,
    params: dict[str, Any],
    seed: int,
    on_epoch: EpochHook | None = None,
    tag: str | None = None,
) -> TrialResult:
    """Train and score one configuration on every split (x repeats) of the sweep's validation."""
    import keras

    from sweeper.training import keras_callbacks

    metric_key = "val_accuracy" if spec.metric == "accuracy" else "val_loss"
    folds = splits(spec, ds)
    runs = [(i, r, tr, va) for i, (tr, va) in enumerate(folds) for r in range(spec.repeats)]
    scores, losses, train_accs, curves, epochs = [], [], [], [], []
    fit_time, n_params = 0.0, 0
    try:
        for i, r, tr, va in runs:
            log_dir = None
            if spec.callbacks.tensorboard:
                from sweeper.paths import study_dir

                tag = tag or CURRENT_TRIAL.get() or f"seed-{seed}"
                log_dir = str(study_dir(spec.name) / "tensorboard" / tag / f"split{i}-repeat{r}")
            callbacks = keras_callbacks(spec.callbacks, log_dir)
            if on_epoch is not None and len(runs) == 1:
                callbacks.append(_EpochCallback(spec.metric, on_epoch))
            t0 = time.perf_counter()
            est = fit_estimator(spec, params, seed + 7919 * i + 104729 * r, callbacks,
                                ds.x[tr], ds.y[tr], (ds.x[va], ds.y[va]), reuse=spec.compute.reuse_models)
            fit_time += time.perf_counter() - t0
            hist = est.history_
            if not all(math.isfinite(v) for v in hist["loss"]):
                bad = next(j for j, v in enumerate(hist["loss"]) if not math.isfinite(v))
                raise TrialError(f"loss became NaN at epoch {bad + 1}: training stopped")
            if spec.callbacks.restores_weights:
                # The kept weights are not the last epoch's: score what the model now is.
                val_loss, val_acc = est.model_.evaluate(ds.x[va], ds.y[va], batch_size=1024, verbose=0)[:2]
                final = {"val_loss": float(val_loss), "val_accuracy": float(val_acc)}
            else:
                final = {"val_loss": float(hist["val_loss"][-1]), "val_accuracy": float(hist["val_accuracy"][-1])}
            scores.append(final[metric_key])
            losses.append(final["val_loss"])
            train_accs.append(float(hist["accuracy"][-1]))
            curves.append([float(v) for v in hist[metric_key]])
            epochs.append(len(hist["loss"]))
            n_params = int(est.model_.count_params())
            del est
    finally:
        if not spec.compute.reuse_models:
            # Free the graph and weights of this trial: a long sweep must not grow (keras#11478,
            # tensorflow#97697). clear_session already runs the garbage collector.
            keras.backend.clear_session()
            purge_gradient_registry()
    width = min(len(c) for c in curves)
    curve = [float(np.mean([c[e] for c in curves])) for e in range(width)]
    return TrialResult(
        mean_test_score=float(np.mean(scores)),
        std_test_score=float(np.std(scores)),
        split_scores=scores,
        val_loss=float(np.mean(losses)),
        train_accuracy=float(np.mean(train_accs)),
        fit_time=fit_time / len(runs),
        epochs_run=int(max(epochs)),
        n_params=n_params,
        curve=curve,
    )
