"""Trial functions for tests/e2e/test_objectives.py: one number per objective, no training."""

from __future__ import annotations

from typing import Any


def two_numbers(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> list[float]:
    """(accuracy, fit_time): dropout costs accuracy, and stands in for the time."""
    dropout = float(params["model__dropout"])
    return [0.9 - 0.2 * dropout + 0.001 * int(params["model__units"]), dropout]
