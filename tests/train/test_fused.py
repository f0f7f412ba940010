"""Fused training (sweeper/train/fused/fit.py): a member of a pack trains as the same configuration
trained alone, members are frozen independently, and dropout / batch norm stay per member."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from sweeper.train.fused.fit import FusedMember, fit_fused, member_from_params
from sweeper.train.fused.init import keras_model
from sweeper.train.fused.sizing import pack_size
from sweeper.train.fused.structure import CNNStructure, MLPStructure

S16 = MLPStructure(units=16)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, ...]:
    """400 digits, shuffled: 320 to train, 80 to validate."""
    from sklearn.datasets import load_digits

    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()
    d = load_digits()
    rows = np.random.default_rng(0).permutation(len(d.target))[:400]
    x = (d.images[rows] / 16.0).astype("float32")[..., None]
    y = d.target[rows].astype("int32")
    return x[:320], y[:320], x[320:], y[320:]


def curve_gap(a: dict[str, list[float]], b: dict[str, list[float]]) -> float:
    keys = ("val_loss", "val_accuracy")
    assert all(len(a[k]) == len(b[k]) for k in keys)
    return max(float(np.max(np.abs(np.subtract(a[k], b[k])))) for k in keys)


def assert_same_weights(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    """Bit for bit, in Keras's weight order."""
    assert [w.shape for w in got] == [w.shape for w in want]
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def keras_optimizer(m: FusedMember) -> Any:

    from sweeper.train.optimizers import optimizer_class

    return optimizer_class(m.optimizer)(learning_rate=m.learning_rate, **m.optimizer_options)


def test_members_train_as_keras_trains_them_alone(digits: tuple[np.ndarray, ...]) -> None:
    """K=4 (adam, rmsprop, sgd+momentum, sweeper's radam; four learning rates; two with dropout;
    320 rows in batches of 30, so a partial one too): each member's weights are those of
    plain Keras training the same model from the same initial weights on the same batches
    (train_on_batch on the member's recorded row order), its dropout masks included: bit for bit
    for Keras's optimizers, within float rounding for sweeper's RAdam (TensorFlow folds its
    constants differently in the two graphs)."""
    import keras

    x, y, xv, yv = digits
    members = [FusedMember(seed=11, epochs=5, learning_rate=0.003, optimizer="adam", dropout=0.3),
               FusedMember(seed=12, epochs=5, learning_rate=0.002, optimizer="rmsprop"),
               FusedMember(seed=13, epochs=5, learning_rate=0.05, optimizer="sgd", optimizer_options={"momentum": 0.9},
                           dropout=0.2),
               FusedMember(seed=14, epochs=5, learning_rate=0.01, optimizer="radam")]
    batch = 30  # 320 rows: ten full batches and a partial one of 20
    fused = fit_fused(members, x, y, (xv, yv), structure=S16, batch_size=batch, record_orders=True)
    gaps = []
    for m, r in zip(members, fused):
        keras.utils.set_random_seed(m.seed)
        model = keras_model(S16, m, x.shape[1:], 10)  # the initial weights the member started from
        model.compile(optimizer=keras_optimizer(m), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        history: dict[str, list[float]] = {"val_loss": [], "val_accuracy": []}
        assert len(r.orders) == 5
        for order in r.orders:
            assert sorted(order) == list(range(len(x)))  # a permutation of the training rows
            for a in range(0, len(order), batch):
                model.train_on_batch(x[order[a:a + batch]], y[order[a:a + batch]])
            loss, acc = model.evaluate(xv, yv, batch_size=1024, verbose=0)
            history["val_loss"].append(loss)
            history["val_accuracy"].append(acc)
        gaps.append(curve_gap(r.history, history))
        if m.optimizer == "radam":
            for got, want in zip(r.weights, model.get_weights()):
                np.testing.assert_allclose(got, want, atol=1e-5)
        else:
            assert_same_weights(r.weights, model.get_weights())
            assert r.history["val_accuracy"] == history["val_accuracy"]
    print("max |fused - keras| per member:", gaps)
    assert max(gaps) < 1e-5  # val_loss: the same predictions, averaged in another order
    assert len({round(r.history["val_loss"][-1], 4) for r in fused}) == 4  # four different fits


def test_k_fold_members_with_batchnorm_equal_fit_config(digits: tuple[np.ndarray, ...]) -> None:
    """Members on their own (differently sized) folds with their own validation rows, batch norm
    on, one with L2, one with dropout (partial last batches: 250 and 275 rows), train as sweeper's
    one fit (fit_config: scikeras, tf.data shuffle) trains them: the same weights, bit for bit,
    and the same validation accuracy at every epoch."""
    from sweeper.config.spec import spec_from_dict
    from sweeper.train.fit import fit_config

    x, y, _, _ = digits
    folds = [(np.arange(0, 250), np.arange(250, 320)), (np.arange(70, 320), np.arange(0, 70)),
             (np.arange(0, 275), np.arange(275, 320))]
    members = [FusedMember(seed=21, epochs=3, learning_rate=0.003, dropout=0.25, train_indices=folds[0][0],
                           val_indices=folds[0][1]),
               FusedMember(seed=22, epochs=3, learning_rate=0.03, optimizer="sgd", optimizer_options={"momentum": 0.9},
                           train_indices=folds[1][0], val_indices=folds[1][1]),
               FusedMember(seed=23, epochs=3, learning_rate=0.002, optimizer="rmsprop", l2=0.001,
                           train_indices=folds[2][0], val_indices=folds[2][1])]
    structure = MLPStructure(units=16, batchnorm=True)
    fused = fit_fused(members, x, y, None, structure=structure, batch_size=32, n_classes=10)
    spec = spec_from_dict({"name": "fused", "data": {"dataset": "digits"}, "model": "mlp", "seed": 0,
                           "params": {"model__units": [16]}}, source="test")
    gaps = []
    for m, r, (tr, va) in zip(members, fused, folds):
        params = {"model__units": 16, "model__batchnorm": True, "model__l2": m.l2, "model__dropout": m.dropout,
                  "optimizer": m.optimizer,
                  "epochs": 3, "batch_size": 32, "optimizer__learning_rate": m.learning_rate,
                  **{f"optimizer__{k}": v for k, v in m.optimizer_options.items()}}
        alone = fit_config(spec, params, m.seed, x[tr], y[tr], (x[va], y[va]))
        gaps.append(float(np.max(np.abs(np.subtract(r.history["val_loss"], alone.history["val_loss"])))))
        assert_same_weights(r.weights, alone.estimator.model_.get_weights())
        assert r.history["val_accuracy"] == alone.history["val_accuracy"]
        assert abs(r.history["loss"][-1] - alone.history["loss"][-1]) < 1e-5
    print("max |fused - fit_config| val_loss per member:", gaps)
    assert max(gaps) < 1e-5


def test_members_are_frozen_and_repacked(digits: tuple[np.ndarray, ...]) -> None:
    """A member with fewer epochs, and one stopped by should_stop, stay in the pack frozen (their
    weights are those of their last epoch) while the others train on; once those left fit a
    quarter of the pack's traced slots (5 members: 8 slots; 2 left) they are re-packed and train
    on unchanged. Each equals the member trained alone."""
    x, y, xv, yv = digits
    members = [FusedMember(seed=31, epochs=2, learning_rate=0.003),  # frozen in the pack through epoch 3
               FusedMember(seed=32, epochs=4, learning_rate=0.01, optimizer="sgd"),  # stopped after epoch 1
               FusedMember(seed=33, epochs=4, learning_rate=0.002, l2=0.001),
               FusedMember(seed=34, epochs=4, learning_rate=0.005, optimizer="rmsprop"),
               FusedMember(seed=35, epochs=3, learning_rate=0.001)]  # then 2 of 5 train on: re-packed
    calls: list[tuple[int, int]] = []

    def stop(i: int, epoch: int, logs: dict[str, float]) -> bool:
        calls.append((i, epoch))
        assert set(logs) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        return i == 1 and epoch == 0

    fused = fit_fused(members, x, y, (xv, yv), structure=S16, batch_size=32, should_stop=stop)
    assert [r.epochs_run for r in fused] == [2, 1, 4, 4, 3]
    assert [r.stopped_early for r in fused] == [False, True, False, False, False]
    assert calls == [(i, 0) for i in range(5)] + [(0, 1), (2, 1), (3, 1), (4, 1), (2, 2), (3, 2), (4, 2),
                                                (2, 3), (3, 3)]
    for m, r in zip(members, fused):
        alone = fit_fused([FusedMember(m.seed, r.epochs_run, m.learning_rate, m.optimizer, l2=m.l2)], x, y,
                          (xv, yv), structure=S16, batch_size=32)[0]
        assert r.history == alone.history
        assert_same_weights(r.weights, alone.weights)


def test_packs_of_one_shape_share_their_traced_steps(digits: tuple[np.ndarray, ...]) -> None:
    """A sweep's packs of one structure, size class and optimizers run one traced step: the
    second pack (other seeds, rates, dropout and L2, and 4 members where the first has 3: both
    trace 4 slots) does not trace again, and trains as it does in a fresh process-wide cache,
    bit for bit."""
    from sweeper.train.fused import pack as fused_pack

    x, y, xv, yv = digits

    def pack(first: int, optimizers: list[str]) -> list[FusedMember]:
        return [FusedMember(seed=first + i, epochs=2, learning_rate=0.002 * (i + 1), optimizer=opt, dropout=0.1 * i,
                            l2=0.001 * (i % 2)) for i, opt in enumerate(optimizers)]

    fused_pack._STEPS.clear()
    fit_fused(pack(91, ["adam", "rmsprop", "adam"]), x, y, (xv, yv), structure=S16, batch_size=32)
    second = fit_fused(pack(95, ["adam", "rmsprop", "adam", "rmsprop"]), x, y, (xv, yv), structure=S16, batch_size=32)
    (train, evaluate), = fused_pack._STEPS.values()
    assert train.experimental_get_tracing_count() == 1 and evaluate.experimental_get_tracing_count() == 1
    fused_pack._STEPS.clear()
    alone = fit_fused(pack(95, ["adam", "rmsprop", "adam", "rmsprop"]), x, y, (xv, yv), structure=S16, batch_size=32)
    for a, b in zip(second, alone):
        assert a.history == b.history
        assert_same_weights(a.weights, b.weights)


def test_dropout_is_per_member_and_independent_of_the_pack(digits: tuple[np.ndarray, ...]) -> None:
    x, y, xv, yv = digits
    plain, dropped = FusedMember(seed=41, epochs=2, learning_rate=0.003), \
        FusedMember(seed=41, epochs=2, learning_rate=0.003, dropout=0.5)
    a = fit_fused([plain, dropped], x, y, (xv, yv), structure=S16, batch_size=32)
    assert a[0].history["loss"] != a[1].history["loss"]
    assert a[1].history["loss"][0] > a[0].history["loss"][0]  # half the units dropped: a harder fit
    assert not np.allclose(a[0].weights[2], a[1].weights[2])
    other = FusedMember(seed=42, epochs=2, learning_rate=0.01, dropout=0.2)
    b = fit_fused([other, dropped], x, y, (xv, yv), structure=S16, batch_size=32)
    assert a[1].history == b[1].history  # the same noise in another pack


def test_batchnorm_statistics_are_per_member(digits: tuple[np.ndarray, ...]) -> None:
    x, y, xv, yv = digits
    members = [FusedMember(seed=51, epochs=2, learning_rate=0.003), FusedMember(seed=52, epochs=2, learning_rate=0.01)]
    a, b = fit_fused(members, x, y, (xv, yv), structure=MLPStructure(units=16, batchnorm=True), batch_size=32)
    # weights: kernel, bias, gamma, beta, moving mean, moving variance, ... of the first block
    assert np.all(np.isfinite(a.weights[4])) and np.all(np.isfinite(b.weights[5]))
    assert not np.allclose(a.weights[4], 0.0) and not np.allclose(a.weights[5], 1.0)
    assert not np.allclose(a.weights[4], b.weights[4]) and not np.allclose(a.weights[5], b.weights[5])
    assert a.history["val_loss"] != b.history["val_loss"]


def test_a_diverging_member_is_frozen_alone(digits: tuple[np.ndarray, ...]) -> None:
    x, y, xv, yv = digits
    members = [FusedMember(seed=61, epochs=2, learning_rate=1e12, optimizer="sgd"),
               FusedMember(seed=62, epochs=2, learning_rate=0.003)]
    bad, good = fit_fused(members, x, y, (xv, yv), structure=S16, batch_size=32)
    assert bad.error is not None and bad.epochs_run == 1
    assert good.error is None and good.epochs_run == 2 and np.isfinite(good.history["val_loss"]).all()


def test_member_from_params() -> None:
    key, m = member_from_params({"optimizer": "sgd", "optimizer__learning_rate": 0.05, "optimizer__momentum": 0.9,
                                 "model__units": 32, "model__batchnorm": True, "model__dropout": 0.2,
                                 "epochs": 7, "batch_size": 64}, seed=5)
    assert key == (MLPStructure(units=32, batchnorm=True), 64)
    assert (m.optimizer, m.learning_rate, m.optimizer_options, m.dropout, m.epochs, m.seed) == \
        ("sgd", 0.05, {"momentum": 0.9}, 0.2, 7, 5)
    assert member_from_params({"optimizer": "adam"}, 1)[1].learning_rate == 0.001  # type: ignore[index]
    assert member_from_params({"optimizer": "nadam"}, 1) is None  # no fused nadam
    assert member_from_params({"optimizer__amsgrad": True}, 1) is None
    assert member_from_params({"model__filters": 8}, 1) is None  # not an MLP argument
    assert member_from_params({"batch_size": -1}, 1) is None  # whole-set batches: sizes differ per member


C4 = CNNStructure(filters=4, units=16)


def cnn_params(structure: CNNStructure, m: FusedMember, epochs: int) -> dict[str, Any]:
    return {"model__filters": structure.filters, "model__units": structure.units,
            "model__batchnorm": structure.batchnorm, "model__activation": structure.activation, "model__dropout": m.dropout, "model__l2": m.l2,
            "optimizer": m.optimizer, "epochs": epochs, "batch_size": 32,
            "optimizer__learning_rate": m.learning_rate, **{f"optimizer__{k}": v for k, v in m.optimizer_options.items()}}


@pytest.mark.parametrize("batchnorm, activation", [(False, "relu"), (True, "prelu"), (True, "leaky_relu")])
def test_cnn_members_equal_fit_config(digits: tuple[np.ndarray, ...], batchnorm: bool, activation: str) -> None:
    """The Fashion CNN (conv, pool, conv, pool, dense, dropout) fused: each member (adam with L2
    and dropout, sgd with momentum, rmsprop) ends with the weights of sweeper's one fit of the same
    config and seed (fit_config: same initial weights, same batches), bit for bit, and the same
    validation accuracy at every epoch; with and without batch norm, for three activations."""
    from sweeper.config.spec import spec_from_dict
    from sweeper.train.fit import fit_config

    x, y, xv, yv = digits
    structure = replace(C4, batchnorm=batchnorm, activation=activation)
    members = [FusedMember(seed=71, epochs=3, learning_rate=0.003, optimizer="adam", l2=0.001, dropout=0.3),
               FusedMember(seed=72, epochs=3, learning_rate=0.05, optimizer="sgd", optimizer_options={"momentum": 0.9}),
               FusedMember(seed=73, epochs=3, learning_rate=0.002, optimizer="rmsprop")]
    fused = fit_fused(members, x, y, (xv, yv), structure=structure, batch_size=32)
    spec = spec_from_dict({"name": "fused-cnn", "data": {"dataset": "digits"}, "model": "cnn", "seed": 0,
                           "params": {"model__units": [16]}}, source="test")
    for m, r in zip(members, fused):
        alone = fit_config(spec, cnn_params(structure, m, 3), m.seed, x, y, (xv, yv))
        assert_same_weights(r.weights, alone.estimator.model_.get_weights())
        assert r.history["val_accuracy"] == alone.history["val_accuracy"]
        assert curve_gap(r.history, alone.history) < 1e-5
    assert len({round(r.history["val_loss"][-1], 4) for r in fused}) == 3


@pytest.mark.slow  # ~27 s: XLA compiles grouped convolutions slowly on CPU
def test_grouped_convolutions_equal_one_per_member(digits: tuple[np.ndarray, ...]) -> None:
    """The GPU layout (members stacked along channels, one grouped conv; shared validation images
    into the first conv with all members' kernels side by side) trains and scores as the CPU's one
    conv per member. CPU TF has no grouped-conv gradient outside XLA, so both run XLA-compiled here
    (op determinism off: XLA has no deterministic max-pool gradient)."""
    from sweeper.train.runtime import set_op_determinism

    x, y, xv, yv = digits
    members = [FusedMember(seed=81, epochs=2, learning_rate=0.05, optimizer="sgd", l2=0.001, dropout=0.3),
               FusedMember(seed=82, epochs=2, learning_rate=0.003, optimizer="rmsprop")]
    set_op_determinism(False)
    try:
        runs = {c: fit_fused(members, x[:160], y[:160], (xv, yv), structure=replace(C4, activation="prelu"),
                             batch_size=32, conv=c, jit_compile=True) for c in ("loop", "grouped")}
    finally:
        set_op_determinism(True)
    for a, b in zip(runs["loop"], runs["grouped"]):
        assert curve_gap(a.history, b.history) < 1e-4
        for got, want in zip(a.weights, b.weights):
            np.testing.assert_allclose(got, want, atol=1e-4)


def test_cnn_member_from_params_and_keras_model() -> None:
    """A CNN sweep's params give a CNN pack key (build_cnn's dropout default, 0.3, when the sweep
    sets none); other families are not fused; a result's weights fit keras_model's model."""
    key, m = member_from_params({"model__filters": 8, "model__units": 32, "model__batchnorm": True,
                                 "optimizer": "rmsprop", "epochs": 3, "batch_size": 64}, seed=9, model="cnn")
    assert key == (CNNStructure(filters=8, units=32, batchnorm=True), 64)
    assert (m.dropout, m.optimizer, m.epochs, m.seed) == (0.3, "rmsprop", 3, 9)
    assert member_from_params({"model__dropout": 0.0}, 1, model="cnn")[1].dropout == 0.0  # type: ignore[index]
    assert member_from_params({"model__units": 64}, 1, model="vgg") is None
    assert member_from_params({"model__units": 64}, 1, model="cnn5") is None
    assert member_from_params({"model__filters": 8}, 1, model="mlp") is None
    model = keras_model(CNNStructure(filters=8, units=32), m, (28, 28, 1), 10)
    assert [tuple(w.shape) for w in model.get_weights()][:2] == [(3, 3, 1, 8), (8,)]
    assert model.get_weights()[4].shape == (7 * 7 * 16, 32)  # two pools: 28 -> 7, 2 x 8 filters


@pytest.mark.parametrize("structure, shape", [
    (MLPStructure(units=16), (64,)),
    (MLPStructure(units=8, batchnorm=True, activation="prelu", kernel_initializer="he_normal"), (64,)),
    (CNNStructure(filters=4, units=8, batchnorm=True), (8, 8, 1)),
], ids=["mlp", "mlp-bn-prelu-he", "cnn-bn"])
def test_initial_weights_are_the_built_models(structure: Any, shape: tuple[int, ...]) -> None:
    """A member's initial weights and Dropout seeds, made from a template's recipe, are those of
    its model built after set_random_seed(seed), bit for bit, with and without dropout; Python's
    and NumPy's generators are left where the build leaves them (the shuffle seed is drawn next)."""
    import random

    import keras

    from sweeper.train.fused import init as fused_init
    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()
    for dropout, l2 in ((0.0, 0.0), (0.3, 0.01)):
        for seed in (5, 77, 2**31 - 2):
            m = FusedMember(seed=seed, epochs=1, dropout=dropout, l2=l2)
            weights, dropout_seeds = fused_init.initial_weights(structure, m, shape, 10)
            after = (random.random(), np.random.randint(0, 2**31 - 1))
            assert fused_init._RECIPES[(structure, dropout > 0, l2 > 0, shape, 10)] is not None  # not the fallback
            keras.utils.set_random_seed(seed)
            model = keras_model(structure, m, shape, 10)
            assert (random.random(), np.random.randint(0, 2**31 - 1)) == after
            assert_same_weights(weights, model.get_weights())
            assert dropout_seeds == tuple(int(layer.seed_generator.state.numpy()[0]) for layer in model.layers
                                          if isinstance(layer, keras.layers.Dropout))
            assert len(dropout_seeds) == (3 if dropout and isinstance(structure, MLPStructure) else 1 if dropout else 0)


def test_initial_weights_without_a_recipe_build_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where a template's recipe does not hold, the member's model is built: the same weights and
    Dropout seeds as from the recipe."""
    from sweeper.train.fused import init as fused_init
    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()
    structure, m = MLPStructure(units=8), FusedMember(seed=9, epochs=1, dropout=0.2)
    from_recipe = fused_init.initial_weights(structure, m, (64,), 10)
    monkeypatch.setattr(fused_init, "_RECIPES", {(structure, True, False, (64,), 10): None})
    built = fused_init.initial_weights(structure, m, (64,), 10)
    assert_same_weights(built[0], from_recipe[0])
    assert built[1] == from_recipe[1] and len(built[1]) == 3


def test_pack_size_follows_model_size_and_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """Wider models get fewer (or as many) members, less memory gives fewer, 1 <= K <= 64; the CPU
    rule gives the K benchmarks/fusion.py found fastest on 2 cores: 16 notebook MLPs at batch 1024,
    64 Fashion CNNs at batch 64 (with memory to spare), fewer with fewer cores."""
    shape = (28, 28, 1)
    for gpu in (True, False):
        for mem in (2**28, 2**31, 80 * 2**30):
            mlp = [pack_size(MLPStructure(units=u), 256, shape, 10, device_memory_bytes=mem, gpu=gpu)
                   for u in (16, 64, 256, 1024)]
            cnn = [pack_size(CNNStructure(filters=f, units=128), 64, shape, 10, device_memory_bytes=mem, gpu=gpu)
                   for f in (8, 32, 128)]
            assert all(1 <= k <= 64 for k in mlp + cnn)
            assert mlp == sorted(mlp, reverse=True) and cnn == sorted(cnn, reverse=True), (gpu, mem, mlp, cnn)
        ks = [pack_size(CNNStructure(filters=32), 128, shape, 10, device_memory_bytes=mem, gpu=gpu)
              for mem in (2**26, 2**28, 2**30, 2**34)]
        assert ks == sorted(ks) and ks[0] < ks[-1]  # more memory: more members, until a cap
    big_gpu = pack_size(MLPStructure(units=64), 1024, shape, 10, device_memory_bytes=80 * 2**30, gpu=True)
    assert big_gpu == 64  # the notebook MLP is small: a big GPU takes the cap
    monkeypatch.setenv("SWEEPER_THREADS", "2")
    assert pack_size(MLPStructure(units=64), 1024, shape, 10, device_memory_bytes=2**34, gpu=False) == 16
    assert pack_size(CNNStructure(filters=32, units=128), 64, shape, 10, device_memory_bytes=2**34, gpu=False) == 64
    monkeypatch.setenv("SWEEPER_THREADS", "1")  # a worker given one of the cores
    assert pack_size(MLPStructure(units=64), 1024, shape, 10, device_memory_bytes=2**34, gpu=False) == 8
    assert pack_size(MLPStructure(), 1024, shape, 10, device_memory_bytes=2**20, gpu=True) == 1  # never 0
