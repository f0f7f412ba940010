"""Params (scikeras routed names) -> an unfitted scikeras ``KerasClassifier``.

``make_estimator(spec, params, seed)`` is all it takes to rebuild any stored trial.
"""

from __future__ import annotations

from typing import Any, Sequence

from sweeper.config.models import resolve_builder
from sweeper.config.spec import SweepSpec


def make_estimator(
    spec: SweepSpec,
    params: dict[str, Any],
    seed: int | None = None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """A ``KerasClassifier`` whose ``get_params()`` contain ``params`` unchanged (the optimizer
    stays its name, e.g. ``"adam"``). ``seed`` becomes ``random_state``; sweeper's own fits pass
    None and seed every generator themselves (train/fit.py)."""
    from sweeper.train.classifier import SweeperClassifier
    from sweeper.train.optimizers import optimizer_class  # imports Keras

    routed = dict(params)
    optimizer = str(routed.pop("optimizer", "adam"))
    optimizer_class(optimizer)  # an unknown name fails here, not inside fit
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


def with_augmentation(builder: Any, spec: SweepSpec, seed: int | None) -> Any:
    """The same builder with the sweep's augmentation layers in front (active in fit only).
    ``functools.wraps`` keeps the signature, so scikeras still routes ``model__*`` params.
    Without a seed, the layers' seed is drawn from NumPy when the model is built: the fit seeded
    NumPy, so the draw is the fit's own, whether the model is new or reused."""
    import functools

    @functools.wraps(builder)
    def build(meta: dict[str, Any], **kwargs: Any) -> Any:
        import keras

        from sweeper.train.callbacks import augmentation_layers

        base = builder(meta, **kwargs)
        inputs = keras.Input(tuple(meta["X_shape_"][1:]))
        x = inputs
        import numpy as np

        layer_seed = seed if seed is not None else int(np.random.randint(0, 2**31 - 16))
        for layer in augmentation_layers(spec.augmentation, layer_seed):
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
