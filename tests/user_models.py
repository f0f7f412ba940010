"""A user's own model builders (``model: user_models:NAME``) for tests."""

from __future__ import annotations

from typing import Any


def exploding(meta: dict[str, Any], units: int = 8) -> Any:
    raise ValueError(f"boom: cannot build with units={units}")


def poison(meta: dict[str, Any], units: int = 8) -> Any:
    """Kills its worker process while building units=13 (as the OOM killer would); else the MLP."""
    import os

    if units == 13:
        os._exit(137)
    from sweeper.train.models.mlp import build_mlp

    return build_mlp(meta, units=units)


def verbose_failure(meta: dict[str, Any], units: int = 8) -> Any:
    """Fails as TensorFlow often does: a useless first line, the reason further down."""
    raise RuntimeError(f"Graph execution error:\n\nDetected at node 'dense/MatMul': units={units} is the culprit")
