"""The model zoo: every builtin builds (or refuses with TrialError) for digits/MNIST/CIFAR shapes,
trains one epoch through scikeras, and reproduces the parameter counts given in docs/reference_notebooks.md."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from sweeper.config.models import BUILTIN, builder_params, resolve_builder
from sweeper.config.spec import DataSpec, SweepSpec
from sweeper.errors import TrialError
from sweeper.train.estimator import make_estimator

SHAPES = [(8, 8, 1), (28, 28, 1), (32, 32, 3)]
N_CLASSES = 10

# (model, extra builder params) -> shapes it refuses; every other shape must build and train.
# autokeras is registered for its model__ keys but is an AutoKeras search, not a builder (test_automl.py).
VARIANTS: list[tuple[str, dict[str, Any]]] = [(name, {}) for name in BUILTIN if name != "autokeras"] + [("vgg", {"conv512": True})]
REFUSES: dict[tuple[str, str], set[tuple[int, int, int]]] = {("vgg", "conv512"): {(8, 8, 1)}}

# Params that only make training cheaper; the architecture is otherwise the default one.
# (sopcnn's default FC 2048 x2 is ~17-21 M params: fine to build, slow to train on 2 cores.)
CHEAP: dict[str, dict[str, Any]] = {"sopcnn": {"fc_units": 64}, "vgg": {"fc_units": 64}}


def _meta(shape: tuple[int, int, int]) -> dict[str, Any]:
    return {"X_shape_": (None, *shape), "n_classes_": N_CLASSES}


def _spec(model: str) -> SweepSpec:
    return SweepSpec(name="t", data=DataSpec(dataset="digits"), model=model, params={}, fixed={})


def _key(name: str, extra: dict[str, Any]) -> tuple[str, str]:
    return name, ",".join(sorted(extra))


CASES = [
    pytest.param(name, extra, shape, id=f"{name}{'-' + ','.join(extra) if extra else ''}-{'x'.join(map(str, shape))}")
    for name, extra in VARIANTS
    for shape in SHAPES
]


@pytest.mark.parametrize(("name", "extra", "shape"), CASES)
def test_builds_and_trains_or_refuses(name: str, extra: dict[str, Any], shape: tuple[int, int, int]) -> None:
    builder = resolve_builder(name)
    if shape in REFUSES.get(_key(name, extra), set()):
        with pytest.raises(TrialError, match=rf"{name}.*at least \d+x\d+.*got {shape[0]}x{shape[1]}"):
            builder(_meta(shape), **extra)
        return
    model = builder(_meta(shape), **extra)
    assert model.output_shape == (None, N_CLASSES)
    assert model.count_params() > 0

    # One epoch of 20 random images (every class present) through the real scikeras path.
    rng = np.random.default_rng(0)
    x = rng.random((20, *shape), dtype=np.float32)
    y = np.arange(20) % N_CLASSES
    params = {f"model__{k}": v for k, v in {**CHEAP.get(name, {}), **extra}.items()}
    est = make_estimator(_spec(name), {"optimizer": "adam", "epochs": 1, "batch_size": 20, "run_eagerly": True, **params}, seed=0)
    est.fit(x, y)
    assert np.isfinite(est.history_["loss"][-1])
    assert est.predict_proba(x[:4]).shape == (4, N_CLASSES)


@pytest.mark.parametrize(
    ("name", "shape", "params", "expected"),
    [
        pytest.param("cnn5", (28, 28, 1), {}, 1_035_146, id="cnn5-notebook-D"),
        pytest.param("cifar_cnn", (32, 32, 3), {}, 271_914, id="cifar_cnn-notebook-E"),
        # docs/reference_notebooks.md, notebook A final Kannada model: "3.05 M params".
        pytest.param(
            "vgg", (28, 28, 1), {"conv512": True, "fc_units": 1024, "inner_dropout": 0.0, "dropout": 0.25},
            3_054_986, id="vgg-final-notebook-A",
        ),
    ],
)
def test_param_counts_match_seeds(name: str, shape: tuple[int, int, int], params: dict[str, Any], expected: int) -> None:
    assert resolve_builder(name)(_meta(shape), **params).count_params() == expected


@pytest.mark.parametrize(
    ("name", "knobs"),
    [
        ("cnn5", {"batchnorm", "dropout", "activation", "kernel_initializer", "l2", "units", "filters"}),
        ("sopcnn", {"batchnorm", "dropout", "activation", "kernel_initializer", "l2", "fc_units"}),
        ("vgg", {"batchnorm", "dropout", "activation", "kernel_initializer", "l2", "fc_units", "conv512", "inner_dropout"}),
        ("cifar_cnn", {"batchnorm", "dropout", "activation", "kernel_initializer", "l2", "units", "inner_dropout"}),
    ],
)
def test_builder_knobs(name: str, knobs: set[str]) -> None:
    """The sweep file can set these as model__<knob>; defaults follow docs/reference_notebooks.md."""
    assert knobs <= set(builder_params(resolve_builder(name)))


def test_seeds_defaults() -> None:
    assert builder_params(resolve_builder("sopcnn"))["fc_units"] == 2048
    assert builder_params(resolve_builder("sopcnn"))["dropout"] == 0.8
    assert builder_params(resolve_builder("sopcnn"))["activation"] == "leaky_relu"
    assert builder_params(resolve_builder("vgg"))["fc_units"] == 256
    assert builder_params(resolve_builder("vgg"))["inner_dropout"] == 0.25


def test_knobs_change_the_model() -> None:
    """batchnorm/l2/activation really reach the layers (not silently ignored)."""
    import keras

    plain = resolve_builder("cnn5")(_meta((8, 8, 1)), batchnorm=False)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    reg = resolve_builder("cifar_cnn")(_meta((8, 8, 1)), l2=1e-4, activation="leaky_relu")
    assert any(isinstance(layer, keras.layers.LeakyReLU) for layer in reg.layers)
    assert all(layer.kernel_regularizer is not None for layer in reg.layers if isinstance(layer, keras.layers.Conv2D))


def test_importing_builders_does_not_import_keras() -> None:
    """Validating a sweep file resolves builders; that must stay instant."""
    code = (
        "import sys; from sweeper.config.models import BUILTIN, resolve_builder\n"
        "[resolve_builder(n) for n in BUILTIN]\n"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules, 'keras imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
