"""A user's own model builders (``model: user_models:NAME``) for tests."""

from __future__ import annotations

from typing import Any


def exploding(meta: dict[str, Any], units: int = 8) -> Any:
    raise ValueError(f"boom: cannot build with units={units}")


def poison(meta: dict[str, Any], units: int = 8) -> Any:
    """Kills its worker process while building units=13 (as the OOM killer would); else the MLP."""
    import os

    if units == 13:
        os._exit(137)
    from sweeper.train.models.mlp import build_mlp

    return build_mlp(meta, units=units)


def verbose_failure(meta: dict[str, Any], units: int = 8) -> Any:
    """Fails as TensorFlow often does: a useless first line, the reason further down."""
    raise RuntimeError(f"Graph execution error:\n\nDetected at node 'dense/MatMul': units={units} is the culprit")


def layered(meta: dict[str, Any], layers: int = 1, width_2: int | None = None) -> Any:
    """Dense layers of 8 and, with ``layers: 2``, of ``width_2``: refuses a ``width_2`` it should
    not have been given (its condition failed) and a missing one."""
    import keras

    if (width_2 is not None) != (layers == 2):
        raise ValueError(f"layers={layers} received width_2={width_2}")
    x = inputs = keras.Input(tuple(meta["X_shape_"][1:]))
    x = keras.layers.Flatten()(x)
    for width in [8, width_2][:layers]:
        x = keras.layers.Dense(width, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(int(meta["n_classes_"]), activation="softmax")(x))
