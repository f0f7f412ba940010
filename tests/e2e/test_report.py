"""Reports without a browser: insights on planted effects, escaping, comparisons, the best-trial
page on a tiny digits CNN, and studies with nothing to report yet."""

from __future__ import annotations

import json
import random
import re
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import run_cli
from support import synthetic

from sweeper.report import write_report
from sweeper.report.escape import script_json, script_literal
from sweeper.report.insights import insights

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)

PLANTED = {
    "model__batchnorm": [True, False],
    "model__dropout": [0.2, 0.4],
    "optimizer__learning_rate": [0.001, 0.01],
    "batch_size": [32, 64, 128],
}


def planted_score(p: dict[str, Any]) -> float:
    """BatchNorm adds 5 points; dropout adds nothing; the rest nothing either."""
    return 0.85 + (0.05 if p["model__batchnorm"] else 0.0)


def insight_items(html: str) -> dict[str, tuple[str, str]]:
    """param -> (verdict, headline text) from the Insights section."""
    section = html.split("id='sweeper-insights'", 1)[1].split("</ol>", 1)[0]
    out = {}
    for m in re.finditer(r"<li class='sw-insight [^']*' data-param='([^']+)' data-verdict='([^']+)'>(.*?)(?:<ul>|</li>)", section):
        out[m.group(1)] = (m.group(2), re.sub("<[^>]+>", "", m.group(3)))
    return out


def test_insights_report_the_planted_effect_and_not_the_null_one(tmp_path: Path) -> None:
    spec = synthetic.make_spec("planted", params=PLANTED)
    study = synthetic.make_study(spec, optuna.storages.InMemoryStorage(), 96, score=planted_score, noise=0.01, seed=7)
    html = write_report(study, spec, tmp_path).read_text()
    items = insight_items(html)
    assert list(items)[0] == "model__batchnorm"  # ordered by importance
    verdict, text = items["model__batchnorm"]
    assert verdict == "clear", text
    m = re.search(r"batchnorm on: \+(\d+\.\d+) pts over off \(95% CI (-?\d+\.\d+) to (-?\d+\.\d+), 48 vs 48 trials", text)
    assert m, text
    effect, lo, hi = map(float, m.groups())
    assert 4.5 <= effect <= 5.5 and lo < 5.0 < hi and lo > 0
    verdict, text = items["model__dropout"]
    assert verdict == "unclear" and "no clear difference" in text, text
    assert all(items[p][0] != "clear" for p in ("optimizer__learning_rate", "batch_size")), items


def test_importances_from_a_second_process_equal_those_computed_here(tmp_path: Path) -> None:
    """A large study's importances may come from ``python -m sweeper.report.importance`` (the
    first report of a process without scikit-learn): the same numbers as in this process, the
    planted parameter first; and ``sweeper report`` on it (its first report) puts them in the page."""
    from sweeper.report import importance

    n = importance.WORKER_MIN_TRIALS + 40
    spec = synthetic.make_spec("large", params=PLANTED)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    study = synthetic.make_study(spec, url, n, score=planted_score, noise=0.01, seed=3)
    inputs = importance._inputs(study, list(spec.params))
    assert inputs is not None and len(inputs.rows) == n
    here = importance._evaluate(inputs)
    there = importance._in_worker(inputs)()
    assert there == here and there.order()[0] == "model__batchnorm" and there.n_trials["fANOVA"] == n
    proc = run_cli("report", "large", "--storage", url, "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    html = (tmp_path / proc.stdout.strip()).read_text()
    assert f"fANOVA <span class='muted'>({n} trials)</span>" in html
    assert list(insight_items(html))[0] == "model__batchnorm"


def test_importances_without_a_second_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No Python to start (or a worker that fails): the importances are computed here instead."""
    from sweeper.report import importance

    spec = synthetic.make_spec("large", params=PLANTED)
    study = synthetic.make_study(spec, optuna.storages.InMemoryStorage(), importance.WORKER_MIN_TRIALS,
                                 score=planted_score, noise=0.01, seed=3)
    inputs = importance._inputs(study, list(spec.params))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(OSError):
        importance._in_worker(inputs)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # starts, answers nothing
    assert importance._in_worker(inputs)() == importance._evaluate(inputs)
    assert not list(Path(tempfile.gettempdir()).glob("sweeper-importances-*")), "input files left behind"


def test_insights_say_when_evidence_is_thin() -> None:
    rng = random.Random(0)
    trials = [{"params": {"model__dropout": d}, "value": 0.9 + rng.gauss(0, 0.01), "state": "complete"}
              for d in (0.2, 0.2, 0.4, 0.4)]
    found = insights(trials, ["model__dropout"], "accuracy", True)
    assert found[0].verdict == "thin"
    assert "too few trials to tell (2 vs 2 trials" in found[0].headline
    one = insights(trials[:2], ["model__dropout"], "accuracy", True)
    assert "one value tried" in one[0].headline


def test_loss_objective_effects_point_down() -> None:
    trials = [{"params": {"model__batchnorm": bn}, "value": (0.3 if bn else 0.5) + 0.001 * i, "state": "complete"}
              for i in range(10) for bn in (True, False)]
    found = insights(trials, ["model__batchnorm"], "loss", False)
    assert found[0].verdict == "clear"
    assert found[0].headline.startswith("batchnorm on: -0.200")
    assert " loss over off (95% CI -0.20" in found[0].headline


def test_script_data_cannot_close_the_script_tag() -> None:
    nasty = {"name": "</script><script>alert(1)</script>", "comment": "<!--<script>"}
    for text in (script_json(nasty), script_literal(json.dumps(nasty))):
        assert "</" not in text and "<!--" not in text
    assert json.loads(script_json(nasty)) == nasty
    assert json.loads(json.loads(script_literal(json.dumps(nasty)))) == nasty


def test_report_of_a_study_with_nothing_complete(tmp_path: Path) -> None:
    spec = synthetic.make_spec("all-failed", params={"model__dropout": [0.1, 0.2]})
    study = synthetic.make_study(spec, optuna.storages.InMemoryStorage(), 4, fail_rate=1.0)
    html = write_report(study, spec, tmp_path).read_text()
    assert "2/2 finished (0 complete, 0 pruned, 2 failed); 2 duplicate" in html  # 4 trials on 2 points
    assert "Not enough completed trials" in html and "Failures (2)" in html
    empty = synthetic.make_spec("empty", params={"model__dropout": [0.1, 0.2]})
    study = synthetic.make_study(empty, optuna.storages.InMemoryStorage(), 0)
    assert "0/2 finished (0 complete, 0 pruned, 0 failed)" in write_report(study, empty, tmp_path).read_text()


@pytest.fixture(scope="module")
def two_studies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    workdir = tmp_path_factory.mktemp("compare")
    url = f"sqlite:///{workdir / 'store.db'}"
    storage = optuna.storages.RDBStorage(url)
    for name, seed in (("<script>alert(1)</script>", 1), ("plain", 2)):
        spec = synthetic.make_spec(name, params={"model__batchnorm": [True, False], "model__dropout": [0.2, 0.4]})
        synthetic.make_study(spec, storage, 8, seed=seed)
    return workdir, url


def test_compare_puts_studies_in_one_plot(two_studies: tuple[Path, str]) -> None:
    from test_end_to_end import hiplot_datapoints

    workdir, url = two_studies
    proc = run_cli("report", "--compare", "<script>alert(1)</script>", "plain", "--storage", url, cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    page = Path(workdir / proc.stdout.strip())
    html = page.read_text()
    points = hiplot_datapoints(html)
    studies = sorted({p["values"]["study"] for p in points})
    # The name reaches HiPlot HTML-escaped: its table would otherwise run it (see hiplot_page).
    assert studies == ["&lt;script&gt;alert(1)&lt;/script&gt;", "plain"]
    assert len(points) == 16
    assert "<script>alert(1)</script>" not in html
    bad = run_cli("report", "--compare", "plain", "--storage", url, cwd=workdir)
    assert bad.returncode == 2 and "at least two" in bad.stderr
    missing = run_cli("report", "--compare", "plain", "nope", "--storage", url, cwd=workdir)
    assert missing.returncode == 2 and "no study named 'nope'" in missing.stderr


def test_best_trial_page_for_a_tiny_digits_cnn(tmp_path: Path) -> None:
    """Refit the best of a (synthetic-score) digits CNN study: training curves, confusion
    matrix, misclassified images and feature maps, linked from the index."""
    from sweeper.config.spec import spec_from_dict

    url = f"sqlite:///{tmp_path / 'store.db'}"
    spec = spec_from_dict({
        "name": "tiny-cnn", "data": {"dataset": "digits", "limit": 300}, "model": "cnn", "method": "grid",
        "params": {"model__batchnorm": [True, False], "model__dropout": [0.0, 0.2]},
        "training": {"epochs": 2, "batch_size": 32, "model__units": 16, "model__filters": 4},
        "validation": {"holdout": 0.25}, "seed": 1, "storage": url,
    })
    assert spec.trial_function is None  # the Keras trial: there is a model to refit
    synthetic.make_study(spec, url, 4, score=lambda p: 0.8 + 0.1 * p["model__batchnorm"], noise=0.0, epochs=2)
    proc = run_cli("report", "tiny-cnn", "--storage", url, "--best", "--out", str(tmp_path / "reports"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    index = Path(proc.stdout.strip())
    best = index.parent / "best-trial"
    assert "href='best-trial/index.html'" in index.read_text()
    for png in ("training.png", "confusion.png", "misclassified.png", "feature_maps.png"):
        assert (best / png).stat().st_size > 1000, png
        assert (best / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (best / "index.html").read_text()
    assert "refit accuracy" in page and "stored accuracy" in page and "first conv layer" in page
    assert re.search(r"75 validation images", page)
