"""Inference latency of a trained model: milliseconds per image on the validation images, at the
sweep file's batch size (``latency: {batch_size, passes}``), the median of several timed passes.

``predict_on_batch`` runs Keras's traced predict function without the per-call data-adapter set-up
of ``predict``, so small models are not timed by their overhead alone; every batch shape is
traced in an untimed warm-up first.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from sweeper.config.objectives import Latency

MAX_IMAGES = 1024  # enough for a stable median; a big validation set would only cost time


def latency_ms(model: Any, x: np.ndarray, options: Latency) -> float:
    """Median over ``options.passes`` timed passes of the time per image, in milliseconds."""
    images = x[:MAX_IMAGES]
    size = options.batch_size
    batches = [images[i:i + size] for i in range(0, len(images), size)]
    for batch in {len(b): b for b in batches}.values():  # trace each batch shape, untimed
        model.predict_on_batch(batch)
    passes = []
    for _ in range(options.passes):
        t0 = time.perf_counter()
        for batch in batches:
            model.predict_on_batch(batch)  # returns NumPy: the pass has finished computing
        passes.append(time.perf_counter() - t0)
    return statistics.median(passes) * 1000.0 / len(images)
