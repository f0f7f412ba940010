"""Reuse compiled Keras models across trials that share a graph structure.

For small models, tracing the train/test functions costs more than training (the §A MLP: ~1.5 s
of tracing, ~0.08 s per later epoch). Trials that differ only in learning rate, epochs, batch
size, seed or data split need no new graph: the cached model gets the trial's fresh initial
weights (built from the trial's seed, exactly as a fresh fit would build them, and copied in,
seed-generator states included), a zeroed optimizer and the trial's learning rate, then fits with
its already-traced functions. Results are the same as a fresh fit, bit for bit on CPU.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from sweeper.estimator import make_estimator
from sweeper.spec import SweepSpec

MAX_CACHED = 8  # distinct graph structures kept per worker process (the §A grid has 8)
_cache: OrderedDict[str, Any] = OrderedDict()


def structure_key(spec: SweepSpec, params: dict[str, Any], x: np.ndarray, n_classes: int) -> str:
    """What the traced graph depends on. Learning rate is a variable; epochs, batch size, seed
    and the data values are not part of the graph."""
    graph_params = {
        k: v for k, v in params.items()
        if k.startswith("model__") or (k.startswith("optimizer") and k != "optimizer__learning_rate")
    }
    return json.dumps(
        [spec.model, graph_params, repr(spec.augmentation), repr(spec.compute), list(x.shape[1:]), n_classes],
        sort_keys=True, default=str,
    )


def _learning_rate(params: dict[str, Any]) -> float:
    """The trial's learning rate, or its optimizer class's default when the sweep sets none."""
    if "optimizer__learning_rate" in params:
        return float(params["optimizer__learning_rate"])
    import inspect

    from sweeper.estimator import optimizer_class

    cls = optimizer_class(str(params.get("optimizer", "adam")))
    return float(inspect.signature(cls.__init__).parameters["learning_rate"].default)


def clear() -> None:
    import keras

    _cache.clear()
    keras.backend.clear_session()
    purge_gradient_registry()


def gradient_registry_keys() -> set[str]:
    """Names in TensorFlow's gradient registry (see purge_gradient_registry)."""
    try:
        from tensorflow.python.framework import ops

        return set(ops._gradient_registry._registry)
    except (ImportError, AttributeError):
        return set()


_baseline_keys: set[str] | None = None


def purge_gradient_registry() -> int:
    """Drop the ``CustomGradient-N`` entries that traced train steps leave in TensorFlow's
    gradient registry. Each holds its whole graph alive after ``clear_session`` (~8 MB per traced
    model; tensorflow#97697), so a long sweep's memory and gc time grow with every new model.
    Only entries added since sweeper's first call are dropped, and only while no cached model
    needs them. Private TF API: a missing registry is a no-op."""
    global _baseline_keys
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return 0
    if _baseline_keys is None:
        _baseline_keys = set(registry)
        return 0
    stale = [k for k in registry if k.startswith("CustomGradient-") and k not in _baseline_keys]
    for k in stale:
        del registry[k]
    return len(stale)


def fit_estimator(
    spec: SweepSpec,
    params: dict[str, Any],
    seed: int,
    callbacks: Sequence[Any],
    x: np.ndarray,
    y: np.ndarray,
    validation_data: tuple[np.ndarray, np.ndarray],
    reuse: bool = True,
) -> Any:
    """Fit a KerasClassifier for ``params`` from initial weights fixed by ``seed``."""
    import keras

    keras.utils.set_random_seed(seed)  # python, numpy, TF and Keras generators: weights, shuffles, dropout
    est = make_estimator(spec, params, None, callbacks)
    if not reuse:
        est.fit(x, y, validation_data=validation_data)
        return est
    key = structure_key(spec, params, x, int(np.max(y)) + 1)
    cached = _cache.get(key)
    if cached is None:
        if len(_cache) >= MAX_CACHED:
            clear()  # drop every cached graph at once: their registry entries go with them
        est.fit(x, y, validation_data=validation_data)
        _cache[key] = est
        return est
    _cache.move_to_end(key)
    est.initialize(x, y)  # the model a fresh fit would start from (same RNG draws)
    for target, source in zip(cached.model_.variables, est.model_.variables):
        target.assign(source)
    optimizer = cached.model_.optimizer
    for v in optimizer.variables:
        v.assign(np.zeros(v.shape, dtype=v.dtype))  # iterations and moments from zero
    optimizer.learning_rate = _learning_rate(params)
    cached.set_params(
        warm_start=True, callbacks=list(callbacks) or None,
        epochs=params.get("epochs", cached.epochs), batch_size=params.get("batch_size", cached.batch_size),
    )
    cached._initialize_callbacks()  # scikeras sets callbacks up in _initialize only
    del est
    cached.fit(x, y, validation_data=validation_data)
    return cached
