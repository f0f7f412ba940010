"""The estimator every trial trains: scikeras's ``KerasClassifier``, fed through ``tf.data``.

Keras re-slices NumPy inputs through a fresh adapter pipeline every epoch, and evaluates NumPy
validation data the same way; for the small models people sweep that costs more than the
training (the notebook-A MLP on mnist5k: 15 epochs took 3.0 s from NumPy, 1.6 s from the pipeline below).
Here the rows are reshuffled each epoch by a seeded full-size shuffle buffer (a uniform
permutation, as Keras's own; it holds one copy of the training rows), and the validation batches
are cached. No Python function goes into the pipelines: a ``map`` traced per fit made the
per-trial time of a long sweep grow (benchmarks/drift.py: 1.16 over 200 trials, flat without).
Everything else (routing, target encoding, history) stays scikeras's.

This module holds every use of scikeras's private API (pyproject pins scikeras below 0.14);
what it assumes about Keras (its batch order and default batch size) is in keras_mirror.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scikeras.wrappers import KerasClassifier

from sweeper.train.keras_mirror import DEFAULT_BATCH_SIZE, keras_batch_order


def training_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int | None) -> Any:
    """Batches of (x, y) in a new seeded order each epoch (the same orders for the same seed);
    in stored order when ``seed`` is None."""
    import tensorflow as tf

    rows = tf.data.Dataset.from_tensor_slices((x, y))
    if seed is not None:
        rows = rows.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return rows.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def evaluation_pipeline(x: np.ndarray, y: np.ndarray, batch_size: int) -> Any:
    """Fixed batches, materialised on the first pass and replayed for every later epoch."""
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).cache().prefetch(tf.data.AUTOTUNE)


class SweeperClassifier(KerasClassifier):
    """``KerasClassifier`` whose ``fit`` feeds NumPy data to Keras as ``tf.data`` pipelines.

    With ``random_state`` set, the rows go in the order ``KerasClassifier(random_state=...)``
    gives them (``keras_batch_order``), so the two fit alike. Otherwise ``batch_order`` when set,
    else each epoch reshuffles them from a seed drawn from NumPy's global generator (which sweeper
    seeds per trial), so a trial's batches are the same whether its model is new or reused.
    Sample weights and non-array inputs go through scikeras unchanged.

    A scikit-learn classifier in full: ``is_classifier`` is True (scikeras 0.13 declares it only
    through the tags API that scikit-learn 1.6 replaced), so ``cross_val_score`` stratifies and
    ``VotingClassifier`` accepts it. The optimizer stays a name in ``get_params`` (``"adam"``,
    also sweeper's ``"radam"``) and becomes a class only when the model is compiled.
    """

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import ClassifierTags

        tags = super().__sklearn_tags__()
        tags.estimator_type = "classifier"
        tags.classifier_tags = ClassifierTags()
        tags.target_tags.required = True
        return tags

    def _get_compile_kwargs(self) -> dict[str, Any]:
        name = self.optimizer
        if not isinstance(name, str):
            return super()._get_compile_kwargs()
        from sweeper.train.optimizers import optimizer_class

        self.optimizer = optimizer_class(name)  # scikeras knows Keras's names only, case-sensitively
        try:
            return super()._get_compile_kwargs()
        finally:
            self.optimizer = name

    def refresh_callbacks(self) -> None:
        """Take up a changed ``callbacks`` parameter on a reused model (scikeras reads it in
        ``initialize`` only)."""
        self._initialize_callbacks()

    # Rows in this order every epoch instead of a seeded reshuffle (keras_batch_order: what
    # Keras's own shuffle of NumPy rows gives); set per fit by train/fit.py.
    batch_order: np.ndarray | None = None

    def _fit_keras_model(self, X: Any, y: Any, sample_weight: Any, warm_start: bool, epochs: int,
                         initial_epoch: int, **kwargs: Any) -> None:
        if sample_weight is None and isinstance(X, np.ndarray) and isinstance(y, np.ndarray):
            params = self.get_params()  # fit__ keys win over plain ones, as scikeras routes them
            batch_size = params.get("fit__batch_size", params.get("batch_size")) or DEFAULT_BATCH_SIZE
            batch_size = len(X) if batch_size == -1 else int(batch_size)
            seed = self._random_state if self._random_state is not None else int(np.random.randint(0, 2**31 - 1))
            shuffle = params.get("fit__shuffle", params.get("shuffle", True))
            order = self.batch_order if shuffle else None
            if shuffle and order is None and self._random_state is not None:
                # KerasClassifier(random_state=s) fits with every generator seeded with s: its order.
                from scikeras.utils.random_state import tensorflow_random_state

                with tensorflow_random_state(self._random_state):
                    order = keras_batch_order(len(X), self._random_state, lambda _: None)
            if order is not None and len(order) == len(X):
                X, y, shuffle = X[order], y[order], False
            X, y = training_pipeline(X, y, batch_size, seed if shuffle else None), None
            kwargs["shuffle"] = False  # the pipeline shuffles
            validation = kwargs.get("validation_data")
            if isinstance(validation, tuple) and len(validation) == 2:
                val_batch = params.get("fit__validation_batch_size", params.get("validation_batch_size")) or batch_size
                kwargs["validation_data"] = evaluation_pipeline(np.asarray(validation[0]), np.asarray(validation[1]),
                                                                int(val_batch))
        super()._fit_keras_model(X, y, sample_weight, warm_start, epochs, initial_epoch, **kwargs)
