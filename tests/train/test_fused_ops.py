"""Each op of a fused pack (sweeper/train/fused/ops/) against its Keras twin, on tiny tensors: the
``member`` form on one member's rows against the Keras layer with the same weights (bit for bit:
it is what makes a fused member its standalone fit), and the ``batched`` form on K stacked
members against K applications of the Keras layer (within float rounding where the batched
arithmetic groups differently, bit for bit where it does not)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sweeper.train import keras_mirror
from sweeper.train.fused.ops import activations, batchnorm, conv, dense, dropout, loss, pooling
from sweeper.train.runtime import configure_tensorflow, tensorflow

K = 3  # members in a stacked pack
TOL = {"rtol": 1e-5, "atol": 1e-6}


@pytest.fixture(scope="module", autouse=True)
def _configured() -> None:
    configure_tensorflow()  # op determinism and no arithmetic rewrites, as every sweeper worker


def rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def built(layer: Any, shape: tuple[int, ...], weights: list[np.ndarray]) -> Any:
    layer.build(shape)
    layer.set_weights(weights)
    return layer


def test_dense_and_flatten() -> None:
    import keras

    tf = tensorflow()
    kernels, biases = rand(K, 6, 4, seed=1), rand(K, 4, seed=2)
    layers = [built(keras.layers.Dense(4), (None, 6), [kernels[k], biases[k]]) for k in range(K)]
    shared, own = rand(5, 6, seed=3), rand(K, 5, 6, seed=4)
    for k, layer in enumerate(layers):
        got = dense.member(tf.constant(own[k]), tf.constant(kernels[k]), tf.constant(biases[k]))
        np.testing.assert_array_equal(np.asarray(got), np.asarray(layer(own[k])))
    for x, is_shared in ((shared, True), (own, False)):
        got = dense.batched(tf, tf.constant(x), tf.constant(kernels), tf.constant(biases), is_shared).numpy()
        assert got.shape == (K, 5, 4)
        for k, layer in enumerate(layers):
            np.testing.assert_allclose(got[k], np.asarray(layer(x if is_shared else x[k])), **TOL)
    images = rand(K, 5, 3, 3, 2, seed=5)
    flat = keras.layers.Flatten()
    np.testing.assert_array_equal(np.asarray(dense.flatten_member(tf.constant(images[0]))), np.asarray(flat(images[0])))
    stacked = dense.flatten_batched(tf, tf.constant(images), K).numpy()
    for k in range(K):
        np.testing.assert_array_equal(stacked[k], np.asarray(flat(images[k])))


@pytest.mark.parametrize("mode", ["loop", "grouped"])
def test_conv(mode: str) -> None:
    import keras

    tf = tensorflow()
    kernels, biases = rand(K, 3, 3, 2, 4, seed=6), rand(K, 4, seed=7)
    layers = [built(keras.layers.Conv2D(4, 3, padding="same"), (None, 6, 6, 2), [kernels[k], biases[k]])
              for k in range(K)]
    shared, own = rand(5, 6, 6, 2, seed=8), rand(K, 5, 6, 6, 2, seed=9)
    for k, layer in enumerate(layers):
        got = conv.member(tf.constant(own[k]), tf.constant(kernels[k]), tf.constant(biases[k]))
        np.testing.assert_array_equal(np.asarray(got), np.asarray(layer(own[k])))
    for x, is_shared in ((shared, True), (own, False)):
        got = conv.batched(tf, tf.constant(x), tf.constant(kernels), tf.constant(biases), K, is_shared, mode).numpy()
        assert got.shape == (K, 5, 6, 6, 4)
        for k, layer in enumerate(layers):
            want = np.asarray(layer(x if is_shared else x[k]))
            if mode == "loop":  # one conv per member: the Keras layer's op
                np.testing.assert_array_equal(got[k], want)
            else:
                np.testing.assert_allclose(got[k], want, **TOL)


@pytest.mark.parametrize("shape", [(6, 4), (6, 3, 3, 4)], ids=["dense", "conv"])
def test_batchnorm(shape: tuple[int, ...]) -> None:
    """Training (batch statistics, the moving update; batched: over each member's real rows of a
    padded window) and inference (moving statistics), with the template's momentum and epsilon."""
    import keras

    tf = tensorflow()
    momentum, epsilon = 0.9, 1e-3
    weights = [rand(K, shape[-1], seed=10), rand(K, shape[-1], seed=11), rand(K, shape[-1], seed=12),
               np.abs(rand(K, shape[-1], seed=13)) + 0.5]  # gamma, beta, moving mean, moving variance

    def layer(k: int) -> Any:
        return built(keras.layers.BatchNormalization(momentum=momentum, epsilon=epsilon), (None, *shape[1:]),
                     [w[k] for w in weights])

    x = rand(K, *shape, seed=14)
    rows = [6, 4, 5]  # member k's real rows of the step's window of 6
    for k in range(K):
        for training in (True, False):
            twin = layer(k)
            got, moving = batchnorm.member(tf, tf.constant(x[k]), [tf.constant(w[k]) for w in weights], training,
                                           momentum, epsilon)
            np.testing.assert_array_equal(np.asarray(got), np.asarray(twin(x[k], training=training)))
            if training:
                np.testing.assert_array_equal(np.asarray(moving[0]), np.asarray(twin.moving_mean))
                np.testing.assert_array_equal(np.asarray(moving[1]), np.asarray(twin.moving_variance))
            else:
                assert moving is None
    mask = tf.constant([[1.0] * n + [0.0] * (6 - n) for n in rows])
    stacked = [tf.constant(w) for w in weights]
    got, moving = batchnorm.batched(tf, tf.constant(x), stacked, K, mask, momentum, epsilon)
    inference, none = batchnorm.batched(tf, tf.constant(x), stacked, K, None, momentum, epsilon)
    assert none is None
    for k, n in enumerate(rows):
        twin = layer(k)
        np.testing.assert_allclose(got.numpy()[k, :n], np.asarray(twin(x[k, :n], training=True)), **TOL)
        np.testing.assert_allclose(moving[0].numpy()[k], np.asarray(twin.moving_mean), **TOL)
        np.testing.assert_allclose(moving[1].numpy()[k], np.asarray(twin.moving_variance), **TOL)
        np.testing.assert_allclose(inference.numpy()[k], np.asarray(layer(k)(x[k], training=False)), **TOL)


def test_dropout() -> None:
    """Each member's mask is the one its own Keras Dropout layer (its seed) draws at its step,
    whatever its rate; rate 0 keeps h itself."""
    import keras

    tf = tensorflow()
    rates, steps = [0.3, 0.0, 0.5], [0, 3, 7]
    x = rand(K, 4, 5, seed=15)
    drops = [keras.layers.Dropout(rate, seed=100 + k) for k, rate in enumerate(rates)]
    # (K, 1 layer): each layer's seed; a rate-0 Dropout has no seed generator (a member without
    # dropout has seed 0 in a pack).
    seeds = np.asarray([[keras_mirror.dropout_layer_seed(d) if d.rate else 0] for d in drops], np.int64)
    wants = []
    for k, d in enumerate(drops):
        for _ in range(steps[k]):  # the layer's state advances once per training call
            d(x[k], training=True)
        wants.append(np.asarray(d(x[k], training=True)))
    scale = [1.0 / (1.0 - r) for r in rates]
    args = (tf.constant(seeds), tf.constant(steps, tf.float32), tf.constant(rates, tf.float32),
            tf.constant(scale, tf.float32))
    for k in range(K):
        got = dropout.member(tf, tf.constant(x[k]), args[0][k, 0], args[1][k], args[2][k], args[3][k])
        np.testing.assert_array_equal(np.asarray(got), wants[k])
    batched = dropout.batched(tf, tf.constant(x), *args, 0, K).numpy()
    for k in range(K):
        np.testing.assert_array_equal(batched[k], wants[k])
    np.testing.assert_array_equal(batched[1], x[1])  # rate 0: h itself


@pytest.mark.parametrize("size", [2, 3])
def test_pooling(size: int) -> None:
    import keras

    tf = tensorflow()
    x = rand(K, 5, 6, 6, 2, seed=16)
    layer = keras.layers.MaxPooling2D(size)
    np.testing.assert_array_equal(np.asarray(pooling.member(tf.constant(x[0]), size)), np.asarray(layer(x[0])))
    got = pooling.batched(tf, tf.constant(x), size, K).numpy()
    for k in range(K):
        np.testing.assert_array_equal(got[k], np.asarray(layer(x[k])))


@pytest.mark.parametrize("name", ["relu", "elu", "tanh", "leaky_relu", "prelu"])
def test_activations(name: str) -> None:
    """By name as the models' Activation layers run them, LeakyReLU with the template's slope,
    PReLU with each member's own alphas (one per unit)."""
    import keras

    tf = tensorflow()
    x = rand(K, 5, 4, seed=17)
    alphas = rand(K, 4, seed=18)
    slope = 0.1 if name == "leaky_relu" else None

    def twin(k: int) -> Any:
        if name == "prelu":
            return built(keras.layers.PReLU(), (None, 4), [alphas[k]])
        if name == "leaky_relu":
            return keras.layers.LeakyReLU(negative_slope=slope)
        return keras.layers.Activation(name)

    alpha = tf.constant(alphas) if name == "prelu" else None
    got = activations.batched(tf, tf.constant(x), name, alpha, slope).numpy()
    for k in range(K):
        want = np.asarray(twin(k)(x[k]))
        member_alpha = None if alpha is None else tf.constant(alphas[k])
        np.testing.assert_array_equal(np.asarray(activations.member(tf.constant(x[k]), name, member_alpha, slope)),
                                      want)
        np.testing.assert_allclose(got[k], want, **TOL)


def test_loss() -> None:
    """Keras's sparse cross-entropy (sum over batch size) plus the hidden kernels' L2 penalties:
    one member's on its rows; K members' each on its real rows of a padded window."""
    import keras

    tf = tensorflow()
    logits, y = rand(K, 6, 5, seed=19), np.random.default_rng(20).integers(0, 5, (K, 6)).astype(np.int32)
    kernels, l2 = [rand(K, 3, 4, seed=21), rand(K, 4, 5, seed=22)], [0.01, 0.0, 0.003]
    rows = [6, 2, 4]
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def want(k: int, n: int) -> float:
        penalty = sum(float(keras.regularizers.L2(l2[k])(w[k])) for w in kernels)
        return float(ce(y[k, :n], logits[k, :n])) + penalty

    for k, n in enumerate(rows):
        got = loss.member(tf, tf.constant(logits[k, :n]), tf.constant(y[k, :n]), [tf.constant(w[k]) for w in kernels],
                          tf.constant(l2[k]), True)
        assert got.numpy() == pytest.approx(want(k, n), rel=1e-6)
        plain = loss.member(tf, tf.constant(logits[k, :n]), tf.constant(y[k, :n]), [], tf.constant(0.0), False)
        assert plain.numpy() == pytest.approx(float(ce(y[k, :n], logits[k, :n])), rel=1e-6)
    mask = tf.constant([[1.0] * n + [0.0] * (6 - n) for n in rows])
    penalties = loss.penalties(tf, [tf.constant(w) for w in kernels], tf.constant(l2), K, True)
    losses, counts = loss.batched(tf, tf.constant(logits), tf.constant(y), mask, penalties)
    assert counts.numpy().tolist() == rows
    np.testing.assert_allclose(losses.numpy(), [want(k, n) for k, n in enumerate(rows)], rtol=1e-6)
    assert loss.penalties(tf, [tf.constant(w) for w in kernels], tf.constant(l2), K, False).numpy().tolist() == [0.0] * K
