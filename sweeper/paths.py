"""Where per-study files go (reports, TensorBoard logs, refitted models)."""

from __future__ import annotations

from pathlib import Path


def safe_dirname(name: str) -> str:
    """A study name as a folder name (any character a user types must still give a path)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return safe or "study"


def study_dir(name: str, root: str | Path = "reports") -> Path:
    return Path(root) / safe_dirname(name)
