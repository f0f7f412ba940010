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
    from sweeper.classifier import SweeperClassifier

    routed = dict(params)
    optimizer = optimizer_class(str(routed.pop("optimizer", "adam")))
    builder = resolve_builder(spec.model)
    if spec.augmentation.active:
        builder = with_augmentation(builder, spec, seed)
    if spec.compute.active:
        builder = with_compute(builder, spec)
    return SweeperClassifier(
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


def with_compute(builder: Any, spec: SweepSpec) -> Any:
    """The builder, compiled here with the sweep's XLA / steps_per_execution / mixed precision
    settings (scikeras compiles only models that arrive uncompiled)."""
    import functools

    compute = spec.compute

    @functools.wraps(builder)
    def build(meta: dict[str, Any], compile_kwargs: dict[str, Any], **kwargs: Any) -> Any:
        import keras

        if compute.mixed_precision:
            keras.mixed_precision.set_global_policy("mixed_float16")
        try:
            model = builder(meta, **kwargs)
            if compute.mixed_precision:
                # Softmax and loss in float32: float16 probabilities underflow.
                outputs = keras.layers.Activation("linear", dtype="float32")(model.output)
                model = keras.Model(model.input, outputs, name=model.name)
        finally:
            keras.mixed_precision.set_global_policy("float32")
        model.compile(**compile_kwargs, jit_compile=compute.jit_compile,
                      steps_per_execution=compute.steps_per_execution)
        return model

    # scikeras passes compile_kwargs only to builders whose signature names it.
    import inspect

    sig = inspect.signature(builder)
    extra = inspect.Parameter("compile_kwargs", inspect.Parameter.KEYWORD_ONLY)
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    params += [extra] + [p for p in sig.parameters.values() if p.kind == p.VAR_KEYWORD]
    build.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return build
