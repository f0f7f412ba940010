"""Params (scikeras routed names) -> an unfitted scikeras ``KerasClassifier``.

``make_estimator(spec, params, seed)`` is all it takes to rebuild any stored trial.
"""

from __future__ import annotations

from typing import Any, Sequence

from sweeper import names
from sweeper.models import resolve_builder
from sweeper.spec import SweepSpec


def optimizer_class(name: str) -> type:
    """Keras optimizer class by case-insensitive name (RAdam comes from sweeper)."""
    import keras

    key = name.lower()
    if key not in names.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}")
    if key == "radam":
        from sweeper.optimizers import RAdam

        return RAdam
    return getattr(keras.optimizers, names.OPTIMIZERS[key])


def make_estimator(
    spec: SweepSpec,
    params: dict[str, Any],
    seed: int,
    callbacks: Sequence[Any] = (),
) -> Any:
    """A ``KerasClassifier`` whose ``get_params()`` contain ``params`` unchanged."""
    from scikeras.wrappers import KerasClassifier

    routed = dict(params)
    optimizer = optimizer_class(str(routed.pop("optimizer", "adam")))
    return KerasClassifier(
        model=resolve_builder(spec.model),
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",  # labels are already 0..K-1 (data.py)
        metrics=["accuracy"],
        random_state=seed,
        verbose=0,
        callbacks=list(callbacks) or None,
        **routed,
    )
