"""The one fit: every model sweeper trains (a trial's split, the report's best-trial refit, the
``best`` refit on all labelled data, ensemble members) is trained and scored here, so a stored
trial and its refit are the same computation.

A fit is fixed by its seed: ``keras.utils.set_random_seed(seed)`` seeds Python, NumPy, TensorFlow
and Keras, which fixes the initial weights, the augmentation layers' seeds, each epoch's batch
order (the pipeline's shuffle seed is drawn from NumPy) and dropout. A trial's split ``i``,
repeat ``r`` uses ``fit_seed(spec, trial_seed, i, r)``; a refit of that split uses the same seed.
Under ``seeding: scikeras`` the generators are seeded again after the build and the rows go in
Keras's own order (``keras_batch_order``), as ``KerasClassifier(random_state=seed)`` fits them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from sweeper.config.models import BUILTIN
from sweeper.config.spec import SweepSpec
from sweeper.errors import TrialError
from sweeper.train.callbacks import keras_callbacks
from sweeper.train.keras_mirror import keras_batch_order
from sweeper.train.reuse import initialized_estimator
from sweeper.train.runtime import (
    flush_now_and_then,
    set_op_determinism,
    set_random_seed_keeping_kernels,
)

EpochHook = Callable[[int, float], None]  # (epoch, validation value of the objective metric)
ModelHook = Callable[[Any], None]  # called with the keras.Model holding its initial weights


def fit_seed(spec: SweepSpec, trial_seed: int, split: int = 0, repeat: int = 0) -> int:
    """The seed of one fit of a trial: split ``split`` of its validation, repeat ``repeat``.
    Seeded the scikeras way, every split has the trial's seed (GridSearchCV fits one
    ``random_state`` on every fold); repeats still differ."""
    if spec.seeds_as_scikeras:
        split = 0
    return trial_seed + 7919 * split + 104729 * repeat


def metric_key(spec: SweepSpec) -> str:
    return "val_accuracy" if spec.metric == "accuracy" else "val_loss"


@dataclass
class Fitted:
    estimator: Any  # the fitted SweeperClassifier
    history: dict[str, list[float]]
    fit_time: float
    epochs_run: int
    n_params: int
    score: float | None = None  # the objective metric on the validation data, as trials store it
    val_loss: float | None = None
    val_accuracy: float | None = None
    train_accuracy: float | None = None
    curve: list[float] = field(default_factory=list)  # per-epoch objective metric on validation
    facts: dict[str, Any] = field(default_factory=dict)  # how the trained model was built (model_facts)
    latency_ms: float | None = None  # per validation image, when the sweep measures it (latency.py)


def _layers(model: Any) -> list[Any]:
    """Every layer, nested models' layers included (augmentation wraps the family's model)."""
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_layers(layer))
    return out


def model_facts(model: Any, history: dict[str, list[float]]) -> dict[str, Any]:
    """What the trained model actually was, read off it: proof that a sweep file's settings took
    effect (stored with each trial's metrics, shown by ``sweeper show --trial N``)."""
    import keras

    layers = _layers(model)
    activations = set()
    for layer in layers:
        if isinstance(layer, keras.layers.Activation):
            activations.add(getattr(layer.activation, "__name__", str(layer.activation)))
        elif isinstance(layer, keras.layers.LeakyReLU):
            activations.add("leaky_relu")
        elif isinstance(layer, keras.layers.PReLU):
            activations.add("prelu")
    facts: dict[str, Any] = {
        "optimizer": type(model.optimizer).__name__,
        "augmentation": [type(layer).__name__ for layer in layers if type(layer).__name__.startswith("Random")],
        "activations": sorted(activations),
        "compute_dtypes": sorted({str(layer.compute_dtype) for layer in layers if getattr(layer, "weights", None)}),
        "jit_compile": bool(getattr(model, "jit_compile", False)),
        "steps_per_execution": int(getattr(model, "steps_per_execution", 1) or 1),
    }
    if "learning_rate" in history:  # ReduceLROnPlateau logs the rate of every epoch
        facts["learning_rates"] = history["learning_rate"]
    return facts


class _EpochCallback:
    """Keras callback forwarding each epoch's validation metric (for pruning and live curves)."""

    def __new__(cls, key: str, hook: EpochHook) -> Any:
        import keras

        class Forward(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                value = (logs or {}).get(key)
                if value is not None:
                    hook(epoch, float(value))

        return Forward()


def fit_config(
    spec: SweepSpec,
    params: dict[str, Any],
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
    validation: tuple[np.ndarray, np.ndarray] | None,
    *,
    log_dir: str | None = None,
    on_epoch: EpochHook | None = None,
    on_built: ModelHook | None = None,
) -> Fitted:
    """Train ``params`` (full, routed names) on ``x, y`` from the initial weights ``seed`` fixes,
    with the sweep's callbacks, and score it on ``validation`` the way trials are scored.

    Without validation data (a refit on every labelled image) the callbacks that watch
    validation metrics are left out: ``params['epochs']`` says how long to train.
    """
    import keras

    callbacks = keras_callbacks(spec.callbacks, log_dir, validation=validation is not None)
    if on_epoch is not None and validation is not None:
        callbacks.append(_EpochCallback(metric_key(spec), on_epoch))
    set_op_determinism(not spec.compute.jit_compile)
    # Python, NumPy, TF and Keras generators: weights, shuffles, dropout. The zoo's models draw
    # only from stateless ops, so their reused traced steps stay instantiated (a trial of the
    # notebook MLP: a third less time); a user's builder may use stateful TF random ops, which
    # only the kernel-cache flush of the plain call restarts.
    if spec.model.lower() in BUILTIN:
        flush_now_and_then()
        seed_all = set_random_seed_keeping_kernels
    else:
        seed_all = keras.utils.set_random_seed
    seed_all(seed)
    t0 = time.perf_counter()
    est, reused = initialized_estimator(spec, params, callbacks, x, y, reuse=spec.compute.reuse_models)
    # Seeded the scikeras way, the fit is seeded again after the build and takes Keras's order.
    est.batch_order = keras_batch_order(len(x), seed, seed_all) if spec.seeds_as_scikeras else None
    if on_built is not None:
        on_built(est.model_)
    est.fit(x, y, validation_data=validation)
    fit_time = time.perf_counter() - t0
    history = {k: [float(v) for v in vals] for k, vals in est.history_.items()}
    losses = history.get("loss", [])
    if not all(math.isfinite(v) for v in losses):
        bad = next(j for j, v in enumerate(losses) if not math.isfinite(v))
        raise TrialError(f"loss became NaN at epoch {bad + 1}: training stopped")
    fitted = Fitted(est, history, fit_time, len(losses), int(est.model_.count_params()),
                    train_accuracy=history["accuracy"][-1] if history.get("accuracy") else None,
                    facts={**model_facts(est.model_, history), "reused_traced_model": reused})
    if validation is None:
        return fitted
    if spec.callbacks.restores_weights:
        # The kept weights are not the last epoch's: score what the model now is.
        val_loss, val_acc = est.model_.evaluate(validation[0], validation[1], batch_size=1024, verbose=0)[:2]
        fitted.val_loss, fitted.val_accuracy = float(val_loss), float(val_acc)
    else:
        fitted.val_loss, fitted.val_accuracy = history["val_loss"][-1], history["val_accuracy"][-1]
    fitted.score = fitted.val_accuracy if spec.metric == "accuracy" else fitted.val_loss
    fitted.curve = list(history[metric_key(spec)])
    if spec.measures_latency:  # after training and scoring: timed passes over the validation images
        from sweeper.train.latency import latency_ms

        fitted.latency_ms = latency_ms(est.model_, validation[0], spec.latency)
    return fitted
