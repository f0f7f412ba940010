"""Keras objects for a sweep's training sections: callbacks and augmentation layers."""

from __future__ import annotations

import math
from typing import Any

from sweeper.config.sections import Augmentation, Callbacks
from sweeper.train.early_stopping import KEEP_BEST_MONITOR, keeps, mode


def augmentation_layers(aug: Augmentation, seed: int) -> list[Any]:
    """Keras preprocessing layers (active in training only) for the sweep's augmentation."""
    import keras

    layers: list[Any] = []
    if aug.rotation:
        layers.append(keras.layers.RandomRotation(aug.rotation / 360.0, fill_mode="constant", seed=seed))
    if aug.width_shift or aug.height_shift:
        layers.append(keras.layers.RandomTranslation(aug.height_shift, aug.width_shift, fill_mode="constant", seed=seed + 1))
    if aug.shear:
        layers.append(keras.layers.RandomShear(x_factor=aug.shear, y_factor=aug.shear, fill_mode="constant", seed=seed + 2))
    if aug.zoom:
        layers.append(keras.layers.RandomZoom(aug.zoom, fill_mode="constant", seed=seed + 3))
    if aug.horizontal_flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed + 4))
    return layers


def keras_callbacks(cb: Callbacks, log_dir: str | None = None, validation: bool = True) -> list[Any]:
    """The sweep's callbacks. Without validation data (a refit on all labelled images) those that
    watch a validation metric are left out: there is nothing for them to watch."""
    import keras

    def watched(monitor: str) -> bool:
        return validation or not monitor.startswith("val_")

    out: list[Any] = [keras.callbacks.TerminateOnNaN()]
    if cb.early_stopping and watched(cb.early_stopping.monitor):
        e = cb.early_stopping
        out.append(keras.callbacks.EarlyStopping(
            monitor=e.monitor, patience=e.patience, min_delta=e.min_delta, restore_best_weights=e.restore_best_weights,
            mode=mode(e.monitor)))
    if cb.reduce_lr and watched(cb.reduce_lr.monitor):
        r = cb.reduce_lr
        out.append(keras.callbacks.ReduceLROnPlateau(
            monitor=r.monitor, factor=r.factor, patience=r.patience, min_delta=r.min_delta, min_lr=r.min_lr,
            mode=mode(r.monitor)))
    if cb.keep_best and validation:
        out.append(KeepBest.make())
    if cb.tensorboard and log_dir:
        out.append(keras.callbacks.TensorBoard(log_dir=log_dir))
    return out


class KeepBest:
    """Keep the weights of the best val_accuracy epoch in memory and restore them at the end
    (the notebooks' ModelCheckpoint(save_best_only) without writing a file per trial); which
    epoch is early_stopping.keeps's rule, which fused packs follow too."""

    @staticmethod
    def make() -> Any:
        import keras

        class _KeepBest(keras.callbacks.Callback):
            def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
                self.best, self.weights = -math.inf, None

            def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
                value = (logs or {}).get(KEEP_BEST_MONITOR)
                if keeps(value, self.best):
                    self.best, self.weights = value, self.model.get_weights()

            def on_train_end(self, logs: dict[str, float] | None = None) -> None:
                if self.weights is not None:
                    self.model.set_weights(self.weights)

        return _KeepBest()
