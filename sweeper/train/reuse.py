"""Reuse compiled Keras models across fits that share a graph structure.

For small models, tracing the train/test functions costs more than training (the notebook MLP:
~1.5 s of tracing, ~0.08 s per later epoch). Fits that differ only in learning rate, epochs,
batch size, seed or data split need no new graph: the cached model gets the fit's fresh initial
weights (built from the fit's seed, exactly as a fresh model would be, and copied in, seed-generator
states included), a zeroed optimizer and the fit's learning rate, then trains with its
already-traced functions. Results are the same as a fresh fit, bit for bit on CPU.
"""

from __future__ import annotations

import inspect
import json
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from sweeper.config.spec import SweepSpec
from sweeper.train.estimator import make_estimator
from sweeper.train.keras_mirror import copy_model_state, reset_optimizer
from sweeper.train.runtime import release_keras_state

MAX_CACHED = 8  # distinct graph structures kept per worker process (the notebook's grid has 8)
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
    """The fit's learning rate, or its optimizer class's default when the sweep sets none."""
    if "optimizer__learning_rate" in params:
        return float(params["optimizer__learning_rate"])
    from sweeper.train.optimizers import optimizer_class  # imports Keras

    cls = optimizer_class(str(params.get("optimizer", "adam")))
    return float(inspect.signature(cls.__init__).parameters["learning_rate"].default)


def clear() -> None:
    _cache.clear()
    release_keras_state()


def initialized_estimator(spec: SweepSpec, params: dict[str, Any], callbacks: Sequence[Any], x: np.ndarray,
                          y: np.ndarray, reuse: bool) -> tuple[Any, bool]:
    """A KerasClassifier holding the initial weights a fresh fit would start from (the caller has
    seeded every generator), ready to ``fit`` with ``warm_start``: a new model, or a cached one of
    the same structure reset to those weights. Also says whether it is a cached one."""
    key = structure_key(spec, params, x, int(np.max(y)) + 1) if reuse else None
    if key is not None and key not in _cache and len(_cache) >= MAX_CACHED:
        clear()  # drop every cached graph at once (their registry entries go with them), before building
    est = make_estimator(spec, params, None, callbacks)
    est.initialize(x, y)  # builds the model: the fit's initial weights
    est.set_params(warm_start=True)
    if key is None:
        return est, False
    cached = _cache.get(key)
    if cached is None:
        _cache[key] = est
        return est, False
    _cache.move_to_end(key)
    copy_model_state(cached.model_, est.model_)  # keras_mirror.MODEL_RESET
    reset_optimizer(cached.model_.optimizer, _learning_rate(params))
    cached.set_params(callbacks=list(callbacks) or None, epochs=params.get("epochs", cached.epochs),
                      batch_size=params.get("batch_size", cached.batch_size))
    cached.refresh_callbacks()
    del est
    return cached, True
