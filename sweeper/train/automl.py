"""The optional ``autokeras`` model family: one Optuna trial = one AutoKeras ImageClassifier search.

``model: autokeras`` puts an AutoKeras search in the same study (and so the same report) as the
hand-built models, scored the same way: on the study's holdout split. Each trial runs
``model__max_trials`` AutoKeras models for ``epochs`` epochs on the train split (AutoKeras
validates on the holdout split), exports the best one and scores it on that split.

Needs the extra: ``pip install 'sweeper[automl]'`` (autokeras 3.0.0). Nothing here imports
Keras or AutoKeras at import time: validating a sweep file stays instant.

``autokeras_search`` is only a signature: it makes ``model: autokeras`` a registered model whose
``model__<name>`` keys the spec can check. The trial itself is ``evaluate`` (worker/evaluators.py: for_spec).
"""

from __future__ import annotations

import gc
import importlib.util
import tempfile
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable

from sweeper.errors import SweeperError, TrialError

if TYPE_CHECKING:
    from sweeper.config.spec import SweepSpec
    from sweeper.train.fit import EpochHook
    from sweeper.train.trial import TrialResult

from sweeper.config.autokeras import BLOCK_TYPES, MISSING, NAME, TRAINING_KEYS, TUNERS  # noqa: F401


# --------------------------------------------------------------------------- AutoKeras
def available() -> bool:
    try:
        return importlib.util.find_spec("autokeras") is not None
    except (ImportError, ValueError):  # ValueError: sys.modules['autokeras'] is None
        return False


def evaluator() -> Callable[..., TrialResult]:
    """The trial function for ``model: autokeras``; refuses at once when the extra is missing."""
    if not available():
        raise SweeperError(MISSING)
    return evaluate


def import_autokeras() -> Any:
    """``import autokeras`` with sweeper's compatibility shims applied (once)."""
    try:
        import autokeras
    except ImportError:
        raise SweeperError(MISSING) from None
    apply_compat_shims(autokeras)
    return autokeras


_SHIMMED = "_sweeper_compat_shim"


def apply_compat_shims(ak: Any) -> None:
    """Make autokeras 3.0.0 run on Keras 3.15 / TensorFlow 2.21. Idempotent; each shim is a no-op
    where it is not needed.

    1. ``ClassificationHead.build`` / ``RegressionHead.build`` call ``layers.Dense(self.shape[-1])``
       where ``self.shape`` comes from ``np.array(x.shape)`` (``Graph.set_io_shapes``): a tuple of
       ``numpy.int64``. Keras >= 3.10 checks ``isinstance(units, int)`` and rejects it:
       "Received an invalid value for `units`, expected a positive integer. Received: units=10".
       The shim turns ``self.shape`` into Python ints before the original build.
    2. keras-tuner 1.4.8 ``Tuner._configure_tensorboard_dir`` imports ``tensorboard`` on every trial
       under the TensorFlow backend, only to patch TensorBoard callbacks; TensorFlow 2.21 no longer
       installs tensorboard, so every AutoKeras trial failed with "No module named 'tensorboard'".
       The shim skips it when no TensorBoard callback is given (sweeper never gives one).
    """
    import functools

    from autokeras.blocks import heads

    for cls in (heads.ClassificationHead, heads.RegressionHead):
        original = cls.build
        if getattr(original, _SHIMMED, False):
            continue

        @functools.wraps(original)
        def build(self: Any, hp: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            if self.shape is not None:
                self.shape = tuple(None if d is None else int(d) for d in self.shape)
            return _original(self, hp, *args, **kwargs)

        setattr(build, _SHIMMED, True)
        cls.build = build

    from keras_tuner.engine.tuner import Tuner

    configure = getattr(Tuner, "_configure_tensorboard_dir", None)
    if configure is not None and not getattr(configure, _SHIMMED, False):

        @functools.wraps(configure)
        def configure_tensorboard_dir(self: Any, callbacks: Any, *args: Any, _original: Any = configure,
                                      **kwargs: Any) -> Any:
            if not any(type(c).__name__ == "TensorBoard" for c in callbacks):
                return None
            return _original(self, callbacks, *args, **kwargs)

        setattr(configure_tensorboard_dir, _SHIMMED, True)
        Tuner._configure_tensorboard_dir = configure_tensorboard_dir


def _recording_tuner(ak: Any, name: str) -> type:
    """The AutoKeras tuner class, recording each model's per-epoch logs (keras-tuner's oracle keeps
    only the best epoch), so the trial can store the best model's validation curve."""
    from autokeras.auto_model import get_tuner_class

    base = get_tuner_class(name)

    def on_epoch_end(self: Any, trial: Any, model: Any, epoch: int, logs: dict[str, Any] | None = None) -> None:
        base.on_epoch_end(self, trial, model, epoch, logs)
        record = self.__dict__.setdefault("sweeper_epochs", {})
        if epoch == 0:
            record[trial.trial_id] = []  # a refit after an OOM batch-size retry starts over
        record.setdefault(trial.trial_id, []).append({k: float(v) for k, v in (logs or {}).items()})

    return type(f"Recording{base.__name__}", (base,), {"on_epoch_end": on_epoch_end})


def evaluate(spec: SweepSpec, params: dict[str, Any], seed: int, on_epoch: EpochHook | None = None) -> TrialResult:
    """One trial: an AutoKeras ImageClassifier search on the train split, its exported best model
    scored on the holdout split. ``on_epoch`` is not called: the search's inner models are not one
    training run that Optuna could prune; the best model's curve is stored with the result."""
    from sweeper.train.data import load_dataset, splits
    from sweeper.train.runtime import configure_tensorflow
    from sweeper.train.trial import FitRecord, TrialResult

    if spec.kfold is not None or spec.repeats != 1:
        raise TrialError("model 'autokeras' needs validation: {holdout: FRACTION} and repeats 1")
    ak = import_autokeras()
    configure_tensorflow()
    import keras

    max_trials = int(params.get("model__max_trials", 3))
    tuner = str(params.get("model__tuner", "greedy"))
    block_type = params.get("model__block_type")
    epochs = int(params.get("epochs", 10))
    batch_size = int(params.get("batch_size", 32))
    if tuner not in TUNERS:
        raise TrialError(f"model__tuner {tuner!r} is not an AutoKeras tuner (known: {', '.join(TUNERS)})")
    if block_type is not None and block_type not in BLOCK_TYPES:
        raise TrialError(f"model__block_type {block_type!r} is not one of {', '.join(BLOCK_TYPES)}")

    ds = load_dataset(spec.data)
    ((tr, va),) = splits(spec, ds)
    x_tr, y_tr, x_va, y_va = ds.x[tr], ds.y[tr], ds.x[va], ds.y[va]
    objective = "val_accuracy" if spec.metric == "accuracy" else "val_loss"
    keras.utils.set_random_seed(seed)
    try:
        with tempfile.TemporaryDirectory(prefix="sweeper-autokeras-") as workdir, warnings.catch_warnings():
            # Keras warns on every AutoKeras model (input structure, optimizer variables on reload).
            warnings.filterwarnings("ignore", category=UserWarning, module=r"keras\..*")
            options = dict(max_trials=max_trials, directory=workdir, project_name="search", overwrite=True,
                           seed=seed, objective=objective, tuner=_recording_tuner(ak, tuner))
            if block_type is None:
                clf = ak.ImageClassifier(num_classes=ds.n_classes, **options)
            else:
                inputs = ak.ImageInput()
                head = ak.ClassificationHead(num_classes=ds.n_classes)
                clf = ak.AutoModel(inputs=inputs, outputs=head(ak.ImageBlock(block_type=block_type)(inputs)),
                                   **options)
            t0 = time.perf_counter()
            # The explicit EarlyStopping (patience = epochs: it never stops) keeps AutoKeras from
            # inserting its own and then refitting the winner on train+validation, which would make
            # the validation score meaningless; the exported model is the best model's best epoch.
            stop = keras.callbacks.EarlyStopping(monitor=objective, patience=epochs)
            clf.fit(x_tr, y_tr, epochs=epochs, batch_size=batch_size, validation_data=(x_va, y_va),
                    callbacks=[stop], verbose=0)
            fit_time = time.perf_counter() - t0

            best = clf.tuner.oracle.get_best_trials(1)
            if not best:
                raise TrialError("AutoKeras finished no model (every model of the search failed)")
            best = best[0]
            logs = getattr(clf.tuner, "sweeper_epochs", {}).get(best.trial_id, [])
            val_loss, val_acc = (float(v) for v in clf.evaluate(x_va, y_va, batch_size=batch_size, verbose=0)[:2])
            step = best.best_step if best.best_step is not None and best.best_step < len(logs) else len(logs) - 1
            if logs and "accuracy" in logs[step]:
                train_acc = logs[step]["accuracy"]  # the exported weights' epoch, as trained
            else:
                train_acc = float(clf.evaluate(x_tr, y_tr, batch_size=batch_size, verbose=0)[1])
            n_params = int(clf.export_model().count_params())
    finally:
        keras.backend.clear_session()
        gc.collect()

    score = val_acc if spec.metric == "accuracy" else val_loss
    curve = [e[objective] for e in logs if objective in e] or [score]
    record = FitRecord(score=score, val_accuracy=val_acc, val_loss=val_loss, train_accuracy=float(train_acc),
                       fit_time=fit_time, epochs_run=len(logs) or epochs, n_params=n_params, curve=curve)
    return TrialResult.from_fits([record])
