"""Every fact sweeper/train/keras_mirror.py states about Keras's internals, checked against the
installed Keras: one small test per fact, each failure naming it (``keras_mirror.NAME``), so a
Keras upgrade that moves fused or ``seeding: scikeras`` scores fails here, fast, instead of in
the slow equality tests. Also: the installed Keras is inside pyproject.toml's pin."""

from __future__ import annotations

import inspect
import random
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from sweeper.train import keras_mirror
from sweeper.train.fused.fit import FusedMember, fit_fused
from sweeper.train.fused.init import keras_model
from sweeper.train.fused.structure import CNNStructure, MLPStructure
from sweeper.train.runtime import configure_tensorflow, tensorflow

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


@pytest.fixture(scope="module", autouse=True)
def _configured() -> None:
    configure_tensorflow()  # op determinism and no arithmetic rewrites, as every sweeper worker


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def _satisfies(version: str, spec: str) -> bool:
    ops = {">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
           ">": lambda a, b: a > b, "==": lambda a, b: a == b}
    for clause in spec.split(","):
        op, bound = re.fullmatch(r"\s*(>=|<=|==|<|>)\s*([\d.]+)\s*", clause).groups()  # type: ignore[union-attr]
        width = len(_version(bound))
        if not ops[op](_version(version)[:width], _version(bound)):
            return False
    return True


def test_installed_keras_is_inside_the_pin() -> None:
    import tomllib

    import keras

    if not PYPROJECT.is_file():
        pytest.skip("no pyproject.toml beside tests/")
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    pins = [m.group(1).replace(" ", "") for d in deps if (m := re.fullmatch(r"keras\s*([<>=!~].*)", d.strip()))]
    assert len(pins) == 1, f"keras_mirror.KERAS_VERSIONS: pyproject.toml has no single keras pin: {deps}"
    assert "<" in pins[0], f"keras_mirror.KERAS_VERSIONS: pyproject.toml's keras pin {pins[0]} has no upper bound"
    assert pins[0] == keras_mirror.KERAS_VERSIONS, (
        f"keras_mirror.KERAS_VERSIONS: pyproject.toml pins keras{pins[0]}, the mirror was checked on "
        f"keras{keras_mirror.KERAS_VERSIONS}")
    assert _satisfies(keras.__version__, pins[0]), (
        f"keras_mirror.KERAS_VERSIONS: Keras {keras.__version__} is installed, outside the pin keras{pins[0]}")


# ------------------------------------------------------------------------------ data order
def _recording_fit(x: Any, y: Any = None, **fit: Any) -> list[list[np.ndarray]]:
    """Fit a weightless model (eagerly) and return the first feature of each batch it was given,
    by epoch: the rows Keras fed it, in order."""
    import keras

    class Recorder(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[tuple[int, np.ndarray]] = []
            self.epoch = 0

        def call(self, inputs: Any) -> Any:
            return inputs

        def train_step(self, data: Any) -> dict[str, Any]:
            rows = np.asarray(data[0])[:, 0].astype(np.int64)
            self.seen.append((self.epoch, rows))
            return {"rows": float(len(rows))}

    class NextEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.model.epoch = epoch + 1

    model = Recorder()
    model.compile(run_eagerly=True)
    model.fit(x, y, verbose=0, callbacks=[NextEpoch()], **fit)
    epochs = max(e for e, _ in model.seen) + 1
    return [[b for e, b in model.seen if e == epoch] for epoch in range(epochs)]


def test_passes_per_epoch() -> None:
    """Epoch e of a fit over a reshuffling dataset takes pass KERAS_PASSES_PER_EPOCH * e (fused/fit.py)."""
    import keras

    from sweeper.train.classifier import training_pipeline

    tf = tensorflow()
    n, epochs, shuffle_seed = 24, 3, 1234
    x, y = np.arange(n, dtype=np.float32)[:, None], np.zeros(n, np.int32)
    keras.utils.set_random_seed(0)
    seen = [np.concatenate(batches) for batches in _recording_fit(training_pipeline(x, y, 5, shuffle_seed),
                                                                   epochs=epochs, shuffle=False)]
    keras.utils.set_random_seed(0)  # fused/fit.py's shuffler, read as fit_fused reads it
    passes = iter(tf.data.Dataset.range(n).shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=True)
                  .batch(n).repeat())
    want, every = [], []
    for _ in range(epochs):
        perms = [next(passes).numpy() for _ in range(keras_mirror.KERAS_PASSES_PER_EPOCH)]
        want.append(perms[0])
        every += perms
    every += [next(passes).numpy() for _ in range(4)]
    taken = [next((i for i, p in enumerate(every) if np.array_equal(p, s)), None) for s in seen]
    assert all(np.array_equal(a, b) for a, b in zip(seen, want)), (
        f"keras_mirror.KERAS_PASSES_PER_EPOCH: Keras's epochs took shuffle passes {taken}, the mirror's take "
        f"{[keras_mirror.KERAS_PASSES_PER_EPOCH * e for e in range(epochs)]}")


def test_array_adapter_batch_order() -> None:
    """Model.fit(shuffle=True) on NumPy rows, seeded just before, takes keras_batch_order's order
    every epoch (classifier.py, fit.py, fused/fit.py under seeding: scikeras)."""
    import keras

    n = 37
    x, y = np.arange(n, dtype=np.float32)[:, None], np.zeros(n, np.float32)
    for seed in (3, 2**31 - 2):
        keras.utils.set_random_seed(seed)
        seen = [np.concatenate(b) for b in _recording_fit(x, y, epochs=2, batch_size=8, shuffle=True)]
        want = keras_mirror.keras_batch_order(n, seed, keras.utils.set_random_seed)
        for epoch, order in enumerate(seen):
            assert np.array_equal(order, want), (
                f"keras_mirror.ARRAY_ADAPTER_BATCH_ORDER: Keras's array adapter no longer shuffles as assumed "
                f"(seed {seed}, epoch {epoch}: {order[:8].tolist()}..., mirror {want[:8].tolist()}...)")


def test_default_batch_size() -> None:
    n = 2 * keras_mirror.DEFAULT_BATCH_SIZE + 5
    x = np.arange(n, dtype=np.float32)[:, None]
    sizes = [len(b) for b in _recording_fit(x, np.zeros(n, np.float32), epochs=1, shuffle=False)[0]]
    want = [keras_mirror.DEFAULT_BATCH_SIZE] * 2 + [5]
    assert sizes == want, f"keras_mirror.DEFAULT_BATCH_SIZE: Model.fit without a batch size took batches of {sizes}"


# ------------------------------------------------------------------------ seeds, weights
def test_seed_draws() -> None:
    """Each unseeded initializer and Dropout seed generator takes one default_seed_draws(1) when made."""
    import keras

    random.seed(7)
    made = [keras.initializers.GlorotUniform(), keras.initializers.HeNormal(), keras.layers.Dropout(0.5),
            keras.layers.Dense(3)]
    got = [keras_mirror.initializer_seed(made[0]), keras_mirror.initializer_seed(made[1]),
           keras_mirror.dropout_layer_seed(made[2]), keras_mirror.initializer_seed(made[3].kernel_initializer)]
    after = random.random()
    random.seed(7)
    want = keras_mirror.default_seed_draws(4)
    assert got == want and random.random() == after, (
        f"keras_mirror.SEED_DRAWS: Keras's seeds {got} are not Python's next draws {want} (one each, when made)")


def _built(layers: list[Any], shape: tuple[int, ...]) -> Any:
    import keras

    model = keras.Sequential([keras.Input(shape), *layers])
    model(np.zeros((1, *shape), np.float32))
    return model


def test_initializers() -> None:
    """A layer keeps each weight's initializer as <name>_initializer; a seeded one's values are a
    function of its seed, config and shape alone (fused/init.py's recipes)."""
    import keras

    keras.utils.set_random_seed(5)
    model = _built([keras.layers.Conv2D(2, 3, padding="same", kernel_initializer="he_normal"),
                    keras.layers.BatchNormalization(momentum=0.9), keras.layers.PReLU(), keras.layers.Flatten(),
                    keras.layers.Dense(3)], (4, 4, 1))
    for layer in model.layers:
        for var in layer.weights:
            init = keras_mirror.weight_initializer(layer, var)
            name = f"{type(layer).__name__}.{var.name}"
            assert init is not None, f"keras_mirror.INITIALIZERS: {name} keeps no {var.name}_initializer"
            if isinstance(init, keras_mirror.constant_initializers()):
                continue
            seed = keras_mirror.initializer_seed(init)
            assert seed is not None, f"keras_mirror.INITIALIZERS: {name}'s initializer {init} keeps no integer seed"
            again = keras_mirror.initializer_values(type(init), init.get_config(), seed, var.shape)
            assert np.array_equal(again, var.numpy()), (
                f"keras_mirror.INITIALIZERS: {name} is not what its initializer makes from its seed alone")


@pytest.mark.parametrize("structure, shape", [
    ("mlp", (64,)), ("cnn", (8, 8, 1)),
])
def test_initial_weight_recipes_hold(structure: str, shape: tuple[int, ...]) -> None:
    """fused/init.py's recipe (the facts above, together) reproduces the built model, not the fallback."""
    from sweeper.train.fused import init as fused_init

    s = CNNStructure(filters=2, units=4, batchnorm=True) if structure == "cnn" else MLPStructure(
        units=4, batchnorm=True, activation="prelu")
    recipe = fused_init._recipe(s, FusedMember(seed=1, epochs=1, dropout=0.2, l2=0.01), shape, 10)
    assert recipe is not None, (
        f"keras_mirror.SEED_DRAWS / INITIALIZERS / DROPOUT_SEEDS: fused_init's recipe for {s} does not "
        "reproduce its built model (fused members fall back to building it)")


def test_dropout_seeds_count_train_steps() -> None:
    """A Dropout layer's seed generator state is [seed, steps so far]: one call per train step."""
    import keras

    random.seed(11)
    seed = keras_mirror.default_seed_draws(1)[0]
    random.seed(11)
    dropout = keras.layers.Dropout(0.5)
    model = _built([dropout, keras.layers.Dense(3)], (6,))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert keras_mirror.dropout_seeds(model) == (seed,), (
        f"keras_mirror.DROPOUT_SEEDS: the Dropout seed read {keras_mirror.dropout_seeds(model)} is not its seed {seed}")
    x, y = np.ones((12, 6), np.float32), np.zeros(12, np.int32)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)  # inference draws nothing
    state = dropout.seed_generator.state.numpy().tolist()
    steps = int(model.optimizer.iterations.numpy())
    assert state == [seed, steps] == [seed, 3], (
        f"keras_mirror.DROPOUT_SEEDS: after {steps} train steps the Dropout state is {state}, not [seed, steps]")


def test_dropout_mask() -> None:
    """Keras's Dropout at step s is keras_dropout(seed, s) (fused/ops/dropout.py's member form)."""
    import keras

    tf = tensorflow()
    x = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    for rate in (0.3, 0.5):
        layer = keras.layers.Dropout(rate)
        seed = keras_mirror.dropout_layer_seed(layer)
        for step in range(3):
            got = np.asarray(layer(x, training=True))
            want = keras_mirror.keras_dropout(
                tf, tf.constant(x), tf.constant(seed, tf.int64), tf.constant(float(step)),
                tf.constant(rate, tf.float32), tf.constant(keras_mirror.dropout_scale(rate), tf.float32)).numpy()
            assert np.array_equal(got, want), (
                f"keras_mirror.DROPOUT_MASK: Keras's Dropout(rate={rate}) at step {step} drew another mask or scale")


# ---------------------------------------------------------------------------- optimizers
def test_optimizer_defaults() -> None:
    import keras

    from sweeper.train.optimizers import RAdam

    classes = {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop, "sgd": keras.optimizers.SGD,
               "radam": RAdam}
    for kind, options in keras_mirror.OPTIMIZER_DEFAULTS.items():
        params = inspect.signature(classes[kind].__init__).parameters
        got = {k: float(params[k].default) for k in options}
        got_lr = params["learning_rate"].default
        assert got == options, f"keras_mirror.OPTIMIZER_DEFAULTS: {kind}'s defaults are now {got}, not {options}"
        assert got_lr == keras_mirror.DEFAULT_LEARNING_RATES[kind], (
            f"keras_mirror.DEFAULT_LEARNING_RATES: {kind}'s default learning rate is now {got_lr}")


@pytest.mark.parametrize("kind, options", [
    ("adam", {}), ("adam", {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-5}), ("rmsprop", {}),
    ("rmsprop", {"momentum": 0.9}), ("sgd", {}), ("sgd", {"momentum": 0.9}),
    ("sgd", {"momentum": 0.9, "nesterov": 1.0}), ("radam", {}),
])
def test_update_rules(kind: str, options: dict[str, float]) -> None:
    """fused/optim's rules on a (1, ...) stacked variable, with its constants and per-member
    powers (as Pack._apply gives them), give what the optimizer's own update_step gives, bit for bit."""
    import keras

    from sweeper.train.fused import optim
    from sweeper.train.optimizers import optimizer_class

    tf = tensorflow()
    rng = np.random.default_rng(3)
    # Weights about as large as a step, so that a step's last bit shows in them.
    w0 = (rng.normal(size=(16, 16)) * 0.01).astype(np.float32)
    grads = [rng.normal(size=(16, 16)).astype(np.float32) for _ in range(6)]  # radam rectifies from step 5
    lr = 0.01
    var = keras.Variable(w0)
    opt = optimizer_class(kind)(learning_rate=lr, **{k: bool(v) if k == "nesterov" else v for k, v in options.items()})
    for g in grads:
        opt.apply_gradients([(tf.constant(g), var)])

    member = SimpleNamespace(optimizer=kind, optimizer_options=options, learning_rate=lr)
    h = {k: tf.constant(v) for k, v in optim.constants([member]).items()}
    w, m, v = (tf.Variable(a[None]) for a in (w0, np.zeros_like(w0), np.zeros_like(w0)))
    rule = optim.RULES[kind]
    for step, g in enumerate(grads):
        t = tf.constant([step + 1.0])
        stacked = {key: tf.reshape(val, [1, 1, 1]) for key, val in {**h, **optim.powers(tf, h, t)}.items()}
        rule(tf, w, m, v, tf.constant(g[None]), stacked, tf.reshape(t, [1, 1, 1]), lambda a, value: a.assign(value))
    got, want = w.numpy()[0], np.asarray(var)
    if kind == "radam":  # sweeper's RAdam: within float rounding (TensorFlow folds its constants otherwise)
        assert np.allclose(got, want, rtol=1e-6, atol=1e-7), (
            f"keras_mirror.UPDATE_RULES: the radam rule drifted from sweeper's RAdam by {np.max(np.abs(got - want))}")
    else:
        assert np.array_equal(got, want), (
            f"keras_mirror.UPDATE_RULES: Keras's {kind} {options} update_step no longer computes as the mirror "
            f"(max gap {np.max(np.abs(got - want))})")


# ---------------------------------------------------------------------------- batch norm
@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 3, 4)])
def test_batchnorm(shape: tuple[int, ...]) -> None:
    import keras

    tf = tensorflow()
    rng = np.random.default_rng(4)
    x = rng.normal(size=shape).astype(np.float32)
    layer = keras.layers.BatchNormalization(momentum=keras_mirror.MODEL_BATCHNORM_MOMENTUM)
    layer.build(shape)
    gamma, beta, mean, var = (rng.normal(size=shape[-1]).astype(np.float32) for _ in range(4))
    var = np.abs(var) + 0.5
    layer.set_weights([gamma, beta, mean, var])
    got = np.asarray(layer(x, training=True))
    batch_mean, batch_var = keras_mirror.batchnorm_moments(tf, tf.constant(x))
    want = keras_mirror.batch_normalization(tf, tf.constant(x), batch_mean, batch_var, beta, gamma).numpy()
    assert np.array_equal(got, want), f"keras_mirror.BATCHNORM: BatchNormalization's training output on {shape} moved"
    moving = [keras_mirror.batchnorm_moving(tf.constant(mean), batch_mean).numpy(),
              keras_mirror.batchnorm_moving(tf.constant(var), batch_var).numpy()]
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(moving, (layer.moving_mean, layer.moving_variance))), (
        "keras_mirror.BATCHNORM: BatchNormalization's moving statistics update moved")
    inference = keras_mirror.batch_normalization(tf, tf.constant(x), moving[0], moving[1], beta, gamma).numpy()
    assert np.array_equal(np.asarray(layer(x, training=False)), inference), (
        "keras_mirror.BATCHNORM: BatchNormalization's inference output moved")


# ---------------------------------------------------------------------------- reused models
def test_model_reset() -> None:
    """A used model given a new build's state (copy_model_state) and a reset optimizer
    (reset_optimizer) trains as that new build does, bit for bit, dropout included (reuse.py)."""
    import keras

    def build(seed: int) -> Any:
        keras.utils.set_random_seed(seed)
        model = _built([keras.layers.Dense(8), keras.layers.Dropout(0.3), keras.layers.Dense(3)], (5,))
        model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
        return model

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(16, 5)).astype(np.float32), rng.integers(0, 3, 16).astype(np.int32)
    used = build(1)
    used.fit(x, y, batch_size=4, epochs=1, verbose=0)
    fresh = build(2)
    keras_mirror.copy_model_state(used, fresh)
    keras_mirror.reset_optimizer(used.optimizer, 0.01)
    twin = build(2)
    for model in (used, twin):
        model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(used.get_weights(), twin.get_weights())), (
        "keras_mirror.MODEL_RESET: a reused model reset to a new build's state no longer trains as that build")


# ------------------------------------------------------------------- left where they are
def _keras_early_stopping(cb: Any, values: list[float]) -> tuple[int | None, int]:
    """Drive Keras's callback over ``values`` (a fake model whose weights are the epoch): the
    epoch it stops at (None: never) and the epoch whose weights the model ends with."""

    class Model:
        stop_training = False
        weights = [np.zeros(1)]

        def get_weights(self) -> list[np.ndarray]:
            return [w.copy() for w in self.weights]

        def set_weights(self, weights: list[np.ndarray]) -> None:
            self.weights = weights

    model = Model()
    cb.set_model(model)
    cb.on_train_begin()
    stopped = None
    for epoch, value in enumerate(values):
        model.weights = [np.full(1, epoch)]
        cb.on_epoch_end(epoch, {cb.monitor: value})
        if model.stop_training:
            stopped = epoch
            break
    cb.on_train_end()
    return stopped, int(model.weights[0][0])


def test_early_stopping_rule_and_restore() -> None:
    """early_stopping.EarlyStop stops where Keras's EarlyStopping stops, and scored_epoch is the
    epoch whose weights Keras leaves in the model (restored at the end, stopped early or not)."""
    import keras

    from sweeper.config.sections import Callbacks, EarlyStopping
    from sweeper.train.callbacks import keras_callbacks
    from sweeper.train.early_stopping import EarlyStop, scored_epoch

    rng = np.random.default_rng(6)
    for case in range(160):
        monitor = ("val_loss", "val_accuracy")[case % 2]
        rule = EarlyStopping(monitor=monitor, patience=int(rng.integers(0, 4)), min_delta=(0.0, 1 / 32)[case % 4 > 1],
                             restore_best_weights=bool(case % 8 < 6))
        values = [float(v) for v in rng.integers(0, 12, int(rng.integers(1, 9))) / 16]  # exact in float32, ties
        cb = next(c for c in keras_callbacks(Callbacks(early_stopping=rule))
                  if isinstance(c, keras.callbacks.EarlyStopping))
        keras_stop, keras_kept = _keras_early_stopping(cb, values)
        stopper, ours_stop = EarlyStop.of(rule), None
        for epoch, value in enumerate(values):
            if stopper.stop(epoch, {monitor: value}):
                ours_stop = epoch
                break
        run = len(values) if ours_stop is None else ours_stop + 1
        kept = scored_epoch(Callbacks(early_stopping=rule), {"val_loss": [0.0] * run, monitor: values[:run]}, stopper)
        assert ours_stop == keras_stop, (
            f"keras_mirror.EARLY_STOPPING (early_stopping.EarlyStop): {rule} on {values}: Keras stops at {keras_stop}, "
            f"sweeper at {ours_stop}")
        assert kept == keras_kept, (
            f"keras_mirror.EARLY_STOPPING (early_stopping.scored_epoch): {rule} on {values}: Keras keeps epoch "
            f"{keras_kept}'s weights, sweeper scores epoch {kept}")



def test_early_stopping_rule_on_values() -> None:
    """early_stopping.stop_and_keep, the rule stated once (given per-epoch values, patience,
    min_delta, mode and restore_best: the stop epoch and the epoch whose weights the fit ends
    with), is Keras's EarlyStopping on the same values, in both modes, with and without restore."""
    import keras

    from sweeper.train.early_stopping import stop_and_keep

    rng = np.random.default_rng(8)
    for case in range(240):
        mode = ("min", "max")[case % 2]
        patience, min_delta = int(rng.integers(0, 5)), (0.0, 1 / 32, 1 / 8)[case % 3]
        restore = bool(case % 5 < 3)
        values = [float(v) for v in rng.integers(0, 12, int(rng.integers(1, 10))) / 16]  # exact in float32, ties
        cb = keras.callbacks.EarlyStopping(monitor="value", patience=patience, min_delta=min_delta, mode=mode,
                                           restore_best_weights=restore)
        want = _keras_early_stopping(cb, values)
        got = stop_and_keep(values, patience, min_delta, mode, restore)
        assert got == want, (
            f"keras_mirror.EARLY_STOPPING (early_stopping.stop_and_keep): patience {patience}, min_delta "
            f"{min_delta}, {mode}, restore {restore} on {values}: Keras (stop, kept) {want}, sweeper {got}")

LAYER_CASES = {
    "mlp": (MLPStructure(units=4, batchnorm=True),
            FusedMember(seed=3, epochs=2, learning_rate=0.01, dropout=0.2, l2=0.01)),
    "mlp-prelu": (MLPStructure(units=4, activation="prelu"),
                  FusedMember(seed=4, epochs=2, learning_rate=0.05, optimizer="sgd",
                              optimizer_options={"momentum": 0.9})),
    "cnn": (CNNStructure(filters=2, units=4, batchnorm=True, activation="leaky_relu"),
            FusedMember(seed=5, epochs=2, learning_rate=0.01, optimizer="rmsprop", dropout=0.3)),
}


@pytest.mark.parametrize("name", list(LAYER_CASES))
def test_layer_ops(name: str) -> None:
    """One member of a pack (the ops' member forms, the loss and gradients) trains as its
    Keras model does under train_on_batch on the same batches, bit for bit."""
    import keras

    from sweeper.train.optimizers import optimizer_class

    s, m = LAYER_CASES[name]
    rng = np.random.default_rng(7)
    x = rng.random((28, 8, 8, 1)).astype(np.float32)
    y = (np.arange(28) % 4).astype(np.int32)
    batch = 8  # 28 rows: a partial last batch
    (result,) = fit_fused([m], x, y, (x[:8], y[:8]), structure=s, batch_size=batch, n_classes=4, record_orders=True)
    keras.utils.set_random_seed(m.seed)
    model = keras_model(s, m, x.shape[1:], 4)
    model.compile(optimizer=optimizer_class(m.optimizer)(learning_rate=m.learning_rate, **m.optimizer_options),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    for order in result.orders:
        for a in range(0, len(order), batch):
            model.train_on_batch(x[order[a:a + batch]], y[order[a:a + batch]])
    same = [np.array_equal(a, b) for a, b in zip(result.weights, model.get_weights(), strict=True)]
    assert all(same), (
        f"keras_mirror.LAYER_OPS (fused/ops member forms): a {name} member no longer trains as its "
        f"Keras model (weights that differ: {[i for i, ok in enumerate(same) if not ok]})")


def test_set_random_seed() -> None:
    """keras.utils.set_random_seed seeds Python, NumPy, tf.data shuffles and Keras's global seed
    generator as runtime.set_random_seed_keeping_kernels (which wraps it) assumes."""
    import keras

    from sweeper.train.runtime import set_random_seed_keeping_kernels

    tf = tensorflow()

    def draws() -> tuple[Any, ...]:
        order = next(iter(tf.data.Dataset.range(20).shuffle(20, seed=3).batch(20))).numpy()
        return random.random(), float(np.random.rand()), order.tolist(), keras.random.uniform([2]).numpy().tolist()

    for seed in (0, 2**31 - 1):
        keras.utils.set_random_seed(seed)
        want = draws()
        set_random_seed_keeping_kernels(seed)
        assert draws() == want, "keras_mirror.SET_RANDOM_SEED: keras.utils.set_random_seed seeds otherwise"
        random.seed(seed)
        assert want[0] == random.random(), "keras_mirror.SET_RANDOM_SEED: Python's generator is not seeded with seed"
