"""Small image datasets written as Kaggle-style CSVs (``label,pixel0..pixelN``), for tests and
benchmarks that need a CSV dataset or an image shape the shipped datasets lack."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_image_csv(path: Path, x: np.ndarray, y: np.ndarray, label_column: str = "label") -> Path:
    """``x`` (N, ...) pixel values, flattened into ``pixel0..`` columns after the label."""
    import pandas as pd

    flat = x.reshape(len(x), -1)
    frame = pd.DataFrame(flat, columns=[f"pixel{i}" for i in range(flat.shape[1])])
    frame.insert(0, label_column, y)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def digits_csv(path: Path, n: int = 300) -> Path:
    """sklearn's 8x8 digits (pixels 0-16) as a CSV, ``n`` rows in their shipped order."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return write_image_csv(path, d.images[:n].astype(int), d.target[:n])


def colour_csv(path: Path, n: int = 180, classes: int = 3, side: int = 32, seed: int = 0) -> Path:
    """``side`` x ``side`` RGB images (0-255) whose class is a colour tint plus noise: learnable in
    an epoch or two, with the CIFAR-10 shape (3,072 pixel columns) by default."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.integers(0, 128, size=(n, side, side, 3))
    x[np.arange(n), :, :, y % 3] += 120
    return write_image_csv(path, x.astype(int), y)
