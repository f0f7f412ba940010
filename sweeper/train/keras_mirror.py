"""What sweeper assumes about how Keras works inside, in one place.

Fused training (train/fused/: fit.py, init.py, the ops and update rules) reproduces a Keras fit
bit for bit, and ``seeding: scikeras`` (classifier.py, fit.py) reproduces
``KerasClassifier(random_state=...)``'s batch order; reused models (reuse.py) must start where a
new model starts. None of that is public Keras API: it is how Keras 3.15 happens to do it. A
Keras that does any of it otherwise imports fine and moves scores silently, so pyproject.toml
pins Keras to the minor these facts were read from (``KERAS_VERSIONS``), and
tests/train/test_keras_assumptions.py checks every fact below against the installed Keras, each
failure naming the fact (``keras_mirror.NAME``) that broke. To move the pin: run that test file
on the new Keras, fix what it names, then widen the pin.

The facts (name: what it says; where sweeper relies on it):

- ``KERAS_VERSIONS``: the Keras versions these facts hold for (pyproject.toml's ``keras`` pin).
- ``KERAS_PASSES_PER_EPOCH``: ``Model.fit``'s epoch iterator opens a pass over a sized dataset when
  an epoch ends and another when the next begins, so epoch ``e`` trains on reshuffle pass ``2e``
  of a ``reshuffle_each_iteration`` dataset. fused/fit.py: each member's epoch order.
- ``ARRAY_ADAPTER_BATCH_ORDER`` (``keras_batch_order``): the order ``Model.fit(shuffle=True)``
  takes NumPy rows in: Keras's array adapter draws ``tf.random.shuffle(tf.range(n))`` inside a
  ``tf.data`` map whose op seed the global seed fixes, the same order every epoch. classifier.py
  (``SweeperClassifier`` with ``random_state``), fit.py and fused/fit.py (``seeding: scikeras``).
- ``DEFAULT_BATCH_SIZE``: Keras's batch size when none is given (32). classifier.py, fused/fit.py.
- ``SEED_DRAWS`` (``default_seed_draws``): each initializer and each Dropout seed generator made
  without a seed takes one ``random.randint(1, 10**9)`` from Python's generator when it is made
  (Keras's ``make_default_seed``). fused/init.py: a member's initial weights without a build.
- ``INITIALIZERS`` (``weight_initializer``, ``initializer_values``, ``CONSTANT_INITIALIZERS``): a
  layer keeps its weight ``w``'s initializer as ``<w.name>_initializer``; a seeded initializer keeps
  its integer seed as ``.seed`` and its values are a function of that seed, config and shape
  alone (stateless ops). fused/init.py (its recipes; where they fail it builds the model: slower,
  the same numbers).
- ``DROPOUT_SEEDS`` (``dropout_layer_seed``, ``dropout_seeds``): a Dropout layer's
  ``seed_generator.state`` is ``[seed, calls so far]`` and advances by one per training call, one
  call per train step, so at optimizer step ``t`` it is ``[seed, t]``. fused/init.py, fused/fit.py.
- ``DROPOUT_MASK`` (``keras_dropout``, ``dropout_scale``): Keras's Dropout on TensorFlow casts the
  state as ``floormod(state, int32.max - 1)`` to int32 and calls ``stateless_dropout``, which
  keeps ``x * (1 / (1 - rate))`` where a stateless uniform draw is ``>= rate``. fused/ops/dropout.py
  (``member``; ``batched`` draws the same uniforms from the int64 state).
- ``OPTIMIZER_DEFAULTS`` / ``DEFAULT_LEARNING_RATES``: Keras's Adam, RMSprop and SGD defaults (and
  sweeper's RAdam's). fused/fit.py, fused/optim/ (options a member may vary; its constants).
- ``BATCHNORM`` (``BATCHNORM_EPSILON``, ``batchnorm_moments``, ``batchnorm_moving``,
  ``batch_normalization``): Keras's BatchNormalization in training normalises with
  ``tf.nn.moments`` over every axis but the last, by ``tf.nn.batch_normalization`` with epsilon
  1e-3, and updates ``moving * momentum + batch * (1.0 - momentum)`` (sweeper's models use
  momentum ``MODEL_BATCHNORM_MOMENTUM``). fused/ops/batchnorm.py.
- ``MODEL_RESET`` (``copy_model_state``, ``reset_optimizer``): two builds of one structure list
  their ``variables`` in the same order, Dropout seed generators' states included, and an
  optimizer whose variables are all zeroed and whose learning rate is set again is a new one.
  reuse.py.

Left where they are (owned by modules outside this one), and still checked by the test:

- ``UPDATE_RULES``: Adam's, RMSprop's and SGD's ``update_step`` op for op, with the float32
  constants they compute (``1 - beta`` in Python, then float32; ``beta ** step`` as one scalar
  ``pow`` per variable, hence ``optim.powers`` one member at a time); RAdam's is sweeper's own
  (optimizers.py ``rectified_step``, shared by the Keras optimizer and the fused rule).
  sweeper/train/fused/optim/: one module per optimizer, ``constants`` and ``powers`` in its
  ``__init__``.
- ``EARLY_STOPPING``: Keras 3's EarlyStopping rule (the wait counts before the improvement test,
  no stop at epoch 0, ``min_delta`` signed by mode) and restore rule (with
  ``restore_best_weights`` the best epoch's weights are restored when training ends, stopped early
  or not). sweeper/train/early_stopping.py, the rule stated once (fused packs follow it); fit.py
  scores the restored model. Keras compares ``value - min_delta`` with the best in float32, the
  rule in Python floats: with a ``min_delta`` that float32 rounds, a near-tie may go the other
  way (the test uses values exact in float32).
- ``LAYER_OPS``: the ops, shapes and constants of Keras's Dense, Conv2D, BatchNormalization,
  activations, LeakyReLU(0.1), PReLU, Flatten, MaxPooling2D, the sparse cross-entropy loss
  (``sum_over_batch_size``) plus L2 penalties, and the accuracy metric's argmax, as one member's
  forward and backward pass. sweeper/train/fused/ops/ (each module's ``member`` form), strung
  together by fused/forward.py and traced in fused/pack.py ``Pack._member_fn``.
- ``SET_RANDOM_SEED``: ``keras.utils.set_random_seed`` seeds Python, NumPy and TensorFlow (through
  ``tf.random.set_seed``) and resets Keras's global seed generator. runtime.py
  ``set_random_seed_keeping_kernels`` (private TensorFlow API, kept with the rest of it there).

Not here: autokeras / keras-tuner shims (automl.py; autokeras is pinned exactly) and scikeras's
private hooks (classifier.py; scikeras is pinned below 0.14).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# The Keras versions every fact below was checked on; pyproject.toml pins ``keras`` to these.
KERAS_VERSIONS = ">=3.15,<3.16"

# ----------------------------------------------------------------------------- data order
# Keras 3's epoch iterator opens a pass over a sized dataset when an epoch ends and another when
# the next begins, so a fit's epoch e trains on shuffle pass 2e: fused members do the same.
KERAS_PASSES_PER_EPOCH = 2

DEFAULT_BATCH_SIZE = 32  # Model.fit's batch size when none is given


def keras_batch_order(n: int, seed: int, seed_all: Callable[[int], None]) -> np.ndarray:
    """The order in which ``Model.fit`` takes ``n`` NumPy rows when every generator was seeded
    with ``seed`` just before it, as ``KerasClassifier(random_state=seed)`` seeds its fit. Keras
    shuffles them with ``tf.random.shuffle`` inside a ``tf.data`` map, whose op seed is fixed by the
    global seed when the pipeline is made; each epoch's new pass restarts that op, so every epoch
    takes this one order. The function below makes the same ops in the same order as Keras's (its
    array adapter), hence the same seed; tests/e2e/test_seeding.py checks the scores against
    ``GridSearchCV``. Leaves every generator seeded with ``seed``, as the fit finds them."""
    import tensorflow as tf

    seed_all(seed)

    def permutation(_: Any) -> Any:
        indices = tf.range(n, dtype=tf.int64)
        return tf.random.shuffle(indices)

    order = next(iter(tf.data.Dataset.range(1).map(permutation))).numpy()
    seed_all(seed)
    return order


# ----------------------------------------------------------------- seeds and initial weights
def default_seed_draws(n: int) -> list[int]:
    """The next ``n`` seeds Keras's ``make_default_seed`` takes from Python's generator (one per
    unseeded initializer or seed generator, when it is made)."""
    return [random.randint(1, int(1e9)) for _ in range(n)]


def constant_initializers() -> tuple[type, ...]:
    """Initializers that draw nothing (their weights are copied, not made from a seed)."""
    import keras

    return (keras.initializers.Zeros, keras.initializers.Ones, keras.initializers.Constant)


def weight_initializer(layer: Any, variable: Any) -> Any:
    """The initializer ``layer`` made ``variable`` with (None where it keeps none by that name)."""
    return getattr(layer, f"{variable.name}_initializer", None)


def initializer_seed(initializer: Any) -> int | None:
    """The integer seed a seeded initializer draws from (None: not one)."""
    seed = getattr(initializer, "seed", None)
    return seed if isinstance(seed, int) else None


def initializer_values(cls: type, config: dict[str, Any], seed: int, shape: Sequence[int]) -> np.ndarray:
    """What an initializer of class ``cls`` and ``config`` gives for ``shape`` from ``seed``."""
    return np.asarray(cls.from_config({**config, "seed": seed})(tuple(shape), dtype="float32"))


def dropout_layer_seed(layer: Any) -> int:
    """A Dropout layer's seed: the first entry of its seed generator's state."""
    return int(layer.seed_generator.state.numpy()[0])


def dropout_seeds(model: Any) -> tuple[int, ...]:
    """The seeds of a built model's Dropout layers, in order."""
    import keras

    return tuple(dropout_layer_seed(layer) for layer in model.layers if isinstance(layer, keras.layers.Dropout))


# ------------------------------------------------------------------------------- dropout
def dropout_scale(rate: float) -> float:
    """Dropout's scale as TensorFlow's stateless_dropout computes it from a Python rate."""
    return 1.0 / (1.0 - rate)


def keras_dropout(tf: Any, h: Any, layer_seed: Any, step: Any, rate: Any, scale: Any) -> Any:
    """Keras's Dropout on ``h`` at training step ``step`` (its seed generator's state [seed, step]),
    cast as Keras casts it, into stateless_dropout's Python-rate path written out (x * scale where
    a uniform draw >= rate, else 0), so that the rate can be a tensor. Rate 0 with scale 1 is h
    itself, bit for bit."""
    keep = tf.random.stateless_uniform(tf.shape(h), seed=dropout_seed(tf, layer_seed, step)) >= rate
    return tf.where(keep, h * scale, 0.0)


def dropout_seed(tf: Any, layer_seed: Any, step: Any) -> Any:
    """The stateless seed of Keras's Dropout mask at a training step: its seed generator's state
    [seed, step], cast to int32 as Keras casts it."""
    state = tf.stack([layer_seed, tf.cast(step, tf.int64)])
    return tf.cast(tf.math.floormod(state, tf.int32.max - 1), tf.int32)


def correct_rows(tf: Any, logits: Any, y: Any, weights: Any = 1.0, axis: int | None = None) -> Any:
    """Rows Keras's accuracy metric counts as correct: the argmax of the softmax (the model's
    output) equals the label; ``weights`` (e.g. a member's row mask) summed over ``axis``."""
    hit = tf.cast(tf.equal(tf.argmax(tf.nn.softmax(logits), -1, output_type=tf.int32), y), tf.float32)
    return tf.reduce_sum(hit * weights, axis)


# ---------------------------------------------------------------------------- batch norm
BATCHNORM_EPSILON = 1e-3  # Keras's BatchNormalization default
MODEL_BATCHNORM_MOMENTUM = 0.9  # sweeper's models' (models/layers.py), not Keras's default 0.99


def batchnorm_moments(tf: Any, h: Any) -> tuple[Any, Any]:
    """The batch mean and variance Keras's BatchNormalization normalises with in training."""
    return tf.nn.moments(h, list(range(len(h.shape) - 1)))


def batchnorm_moving(moving: Any, batch: Any, momentum: float = MODEL_BATCHNORM_MOMENTUM) -> Any:
    """A moving statistic after a training step, as Keras's BatchNormalization updates it."""
    return moving * momentum + batch * (1.0 - momentum)


def batch_normalization(tf: Any, h: Any, mean: Any, var: Any, beta: Any, gamma: Any,
                        epsilon: float = BATCHNORM_EPSILON) -> Any:
    """Keras's BatchNormalization's output on TensorFlow (channels last)."""
    return tf.nn.batch_normalization(h, mean, var, beta, gamma, epsilon)


# ---------------------------------------------------------------------------- optimizers
# The options a member may give each optimizer, with Keras's (and sweeper's RAdam) defaults.
OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "adam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
    "rmsprop": {"rho": 0.9, "momentum": 0.0, "epsilon": 1e-7},
    "sgd": {"momentum": 0.0, "nesterov": 0.0},
    "radam": {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-7},
}
DEFAULT_LEARNING_RATES = {"adam": 0.001, "rmsprop": 0.001, "sgd": 0.01, "radam": 0.001}

# ------------------------------------------------------------------------- reused models
def copy_model_state(target: Any, source: Any) -> None:
    """Give the model ``target`` the state of ``source``, a new build of the same structure: its
    weights and its seed generators' states (``variables`` lists both, in build order)."""
    for t, s in zip(target.variables, source.variables):
        t.assign(s)


def reset_optimizer(optimizer: Any, learning_rate: float) -> None:
    """Make a used optimizer a new one: iterations and moments from zero, the learning rate set."""
    for v in optimizer.variables:
        v.assign(np.zeros(v.shape, dtype=v.dtype))  # iterations and moments from zero
    optimizer.learning_rate = learning_rate
