"""Where per-study files go (reports, TensorBoard logs, refitted models)."""

from __future__ import annotations

import hashlib
from pathlib import Path

MAX_DIRNAME = 100


def safe_dirname(name: str) -> str:
    """A study name as a folder name, one folder per study. Names sweeper accepts for new studies
    ([A-Za-z0-9._-], at most 100) are used as they are; any other name (a study made elsewhere)
    gets its unsafe characters replaced and a hash of the whole name, so 'a/b' and 'a_b' differ."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")[:MAX_DIRNAME - 13]
    if safe == name and len(name) <= MAX_DIRNAME:
        return name
    return f"{safe or 'study'}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def study_dir(name: str, root: str | Path = "reports") -> Path:
    return Path(root) / safe_dirname(name)
