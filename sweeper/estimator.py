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
    builder = resolve_builder(spec.model)
    if spec.augmentation.active:
        builder = with_augmentation(builder, spec, seed)
    return KerasClassifier(
        model=builder,
        optimizer=optimizer,
        loss="sparse_categorical_crossentropy",  # labels are already 0..K-1 (data.py)
        metrics=["accuracy"],
        random_state=seed,
        verbose=0,
        callbacks=list(callbacks) or None,
        **routed,
    )


def with_augmentation(builder: Any, spec: SweepSpec, seed: int) -> Any:
    """The same builder with the sweep's augmentation layers in front (active in fit only).
    ``functools.wraps`` keeps the signature, so scikeras still routes ``model__*`` params."""
    import functools

    @functools.wraps(builder)
    def build(meta: dict[str, Any], **kwargs: Any) -> Any:
        import keras

        from sweeper.training import augmentation_layers

        base = builder(meta, **kwargs)
        inputs = keras.Input(tuple(meta["X_shape_"][1:]))
        x = inputs
        for layer in augmentation_layers(spec.augmentation, seed):
            x = layer(x)
        return keras.Model(inputs, base(x), name=f"augmented_{base.name}")

    return build
