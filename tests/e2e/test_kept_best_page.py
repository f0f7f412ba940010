"""The best-trial page (``sweeper report STUDY --best``) of a study that keeps models draws from
the best trial's kept model and trains nothing (every Keras fit counted, as the refit path shows
it counts them), says "kept model" and scores it as stored; without the kept file it refits, as
a study without kept models does, and says "refit"."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import pytest
from support.kept import kept_ids, kept_now, run, url_of

from sweeper.cli import main
from sweeper.store.keys import KEPT_ATTR
from sweeper.report.escape import fmt
from sweeper.store.progress import ranked

CNN: dict[str, Any] = {
    "model": "cnn", "params": {"model__batchnorm": [True, False], "model__dropout": [0.0, 0.2]},
    "training": {"epochs": 2, "batch_size": 32, "model__units": 16, "model__filters": 4},
}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every training from here on, by kind: Keras's ``Model.fit`` (scikeras fits) and fused packs."""
    import keras

    from sweeper.train.fused import trials as fused  # where packs call fit_fused

    seen: list[str] = []
    fit, fit_fused = keras.Model.fit, fused.fit_fused

    def counted_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append("keras")
        return fit(self, *args, **kwargs)

    def counted_fused(*args: Any, **kwargs: Any) -> Any:
        seen.append("fused")
        return fit_fused(*args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", counted_fit)
    monkeypatch.setattr(fused, "fit_fused", counted_fused)
    return seen


def facts(page: str) -> dict[str, str]:
    """The page's fact table: label -> value (unescaped)."""
    return {html.unescape(k): html.unescape(v) for k, v in re.findall(r"<th>(.*?)</th>\s*<td>(.*?)</td>", page)}


def best_page(tmp_path: Path, name: str) -> tuple[dict[str, str], str]:
    assert main(["report", name, "--storage", url_of(tmp_path), "--best", "--out", str(tmp_path / "reports")]) == 0
    page = (tmp_path / "reports" / name / "best-trial" / "index.html").read_text()
    return facts(page), page


def test_the_best_trial_page_uses_the_kept_model_and_trains_nothing(tmp_path: Path, fits: list[str]) -> None:
    study, _ = run(tmp_path, "cnnk", artifacts={"keep": 1}, **CNN)
    assert fits, "the spy saw no training while the sweep ran"
    best = ranked(study.get_trials(), "maximize")[0]
    assert [t.number for t in kept_now(study)] == [best.number]
    fits.clear()
    shown, page = best_page(tmp_path, "cnnk")
    assert fits == [], f"the best-trial page trained: {fits}"
    assert shown["trial"] == f"#{best.number}" and shown["model"].startswith("kept model:"), shown
    assert "nothing trained" in shown["model"]
    stored = [v for k, v in shown.items() if k.startswith("stored accuracy")]
    from_kept = [v for k, v in shown.items() if k.startswith("kept model accuracy")]
    assert stored == from_kept == [fmt(best.value)], shown
    assert "feature maps of the kept model" in page and "as the trial stored it" in page
    for png in ("training.png", "confusion.png", "misclassified.png", "feature_maps.png"):
        assert (tmp_path / "reports" / "cnnk" / "best-trial" / png).stat().st_size > 1000, png

    # Its kept file gone (the folder tidied by hand): the page refits, and says so.
    for artifact_id in kept_ids(best):
        (Path(best.user_attrs[KEPT_ATTR]["store"]) / artifact_id).unlink()
    shown, _ = best_page(tmp_path, "cnnk")
    assert fits == ["keras"], fits
    assert shown["model"].startswith("refit:") and any(k.startswith("refit accuracy") for k in shown), shown
