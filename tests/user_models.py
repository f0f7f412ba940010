"""A user's own model builders (``model: user_models:NAME``) for tests."""

from __future__ import annotations

from typing import Any


def exploding(meta: dict[str, Any], units: int = 8) -> Any:
    raise ValueError(f"boom: cannot build with units={units}")
