"""Reading what a written report page shows, as a reader sees it (tags stripped)."""

from __future__ import annotations

import html
import re
from pathlib import Path


def page_text(path: Path) -> str:
    """The page's text: entities decoded, tags replaced by spaces."""
    return re.sub(r"<[^>]+>", " ", html.unescape(path.read_text()))


def best_page_scores(reports: Path, study: str) -> tuple[str | None, str | None]:
    """The stored score and the score of the model the best-trial page of ``study`` (under
    ``reports``, as ``sweeper report STUDY --best --out REPORTS`` writes it) shows for the sweep's
    holdout split: a refit, or the trial's kept model when it has one."""
    text = page_text(reports / study / "best-trial" / "index.html")
    found = [re.search(rf"{kind} accuracy \(the sweep's holdout split\)\s+([0-9.]+)", text)
             for kind in ("stored", "(?:refit|kept model)")]
    stored, refit = (m.group(1) if m else None for m in found)
    return stored, refit
