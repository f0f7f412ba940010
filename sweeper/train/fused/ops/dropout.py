"""Keras's Dropout for pack members: each member's masks are those its own Dropout layers draw
at its optimizer step (keras_mirror.DROPOUT_SEEDS, DROPOUT_MASK), whatever pack it is in. Rate 0
with scale 1 keeps every unit: h itself, bit for bit."""

from __future__ import annotations

from typing import Any

from sweeper.train.keras_mirror import dropout_seed, keras_dropout


def member(tf: Any, h: Any, layer_seed: Any, step: Any, rate: Any, scale: Any) -> Any:
    """One member's Dropout at its seed generator's state [seed, steps so far], with the rate a
    tensor of the pack."""
    return keras_dropout(tf, h, layer_seed, step, rate, scale)


def batched(tf: Any, h: Any, seeds: Any, steps: Any, rates: Any, scales: Any, layer: int, k: int) -> Any:
    """K members' Dropout layer ``layer`` on (K, B, ...); ``seeds`` (K, dropout layers), the
    others (K,)."""
    return h * tf.stack([keep(tf, tf.shape(h)[1:], seeds[n, layer], steps[n], rates[n], scales[n])
                         for n in range(k)])


def keep(tf: Any, shape: Any, layer_seed: Any, step: Any, rate: Any, scale: Any) -> Any:
    """One member's dropout multiplier (0 or its scale): the mask ``stateless_dropout`` draws for
    Keras's Dropout at this step. Its rows come first in the step's (B, ...) window, and the draw
    for fewer rows is a prefix of the draw for B."""
    seed = dropout_seed(tf, layer_seed, step)
    return tf.cast(tf.random.stateless_uniform(shape, seed=seed) >= rate, tf.float32) * scale
