"""A real (tiny) Keras sweep through the CLI: store, show, export, report, Optuna compatibility."""

from __future__ import annotations

import json
import re
from pathlib import Path

import optuna
import pytest
from conftest import run_cli, write_sweep


def hiplot_datapoints(html: str) -> list[dict]:
    """The rows HiPlot will draw, decoded from the options the page passes to hiplot.render."""
    match = re.search(r"eval\('\(' \+ (\".*?\") \+ '\)'\)", html, re.S)
    assert match, "no HiPlot experiment in the page"
    options = json.loads(json.loads(match.group(1)))
    return options["experiment"]["datapoints"]


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    workdir = tmp_path_factory.mktemp("e2e")
    sweep = write_sweep(workdir / "tiny.yaml")
    proc = run_cli("run", str(sweep), cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "report: reports/tiny/index.html" in proc.stdout
    return workdir, workdir / "store.db"


def test_store_opens_with_optuna_and_matches_show(finished_sweep: tuple[Path, Path]) -> None:
    workdir, store = finished_sweep
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{store}")
    trials = study.get_trials()
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials)
    points = {(t.params["model__batchnorm"], t.params["model__dropout"]) for t in trials}
    assert points == {(True, 0.0), (True, 0.2), (False, 0.0), (False, 0.2)}
    for t in trials:
        m = t.user_attrs["metrics"]
        assert 0.0 <= t.value <= 1.0 and m["epochs_run"] == 2 and m["n_params"] > 0
        assert len(t.intermediate_values) == 2  # per-epoch validation curve
        assert m["fit_time"] > 0 and "val_loss" in m and "train_accuracy" in m
    show = run_cli("show", "tiny", "--storage", f"sqlite:///{store}", cwd=workdir)
    assert show.returncode == 0, show.stderr
    listed = [int(line.split()[0]) for line in show.stdout.splitlines()[2:] if line.strip()]
    assert sorted(listed) == sorted(t.number for t in trials)
    ls = run_cli("ls", "--storage", f"sqlite:///{store}", cwd=workdir)
    assert "tiny" in ls.stdout and "4/4 finished (4 complete, 0 pruned, 0 failed)" in ls.stdout


def test_report_contains_every_trial(finished_sweep: tuple[Path, Path]) -> None:
    workdir, _ = finished_sweep
    html = (workdir / "reports" / "tiny" / "index.html").read_text()
    points = hiplot_datapoints(html)
    assert sorted(p["values"]["trial"] for p in points) == [0, 1, 2, 3]
    assert all("model__batchnorm" in p["values"] and "accuracy" in p["values"] for p in points)
    assert "<script src=" not in html  # everything inline: opens offline


def test_json_export_round_trips(finished_sweep: tuple[Path, Path]) -> None:
    workdir, store = finished_sweep
    out = workdir / "grid_result.json"
    proc = run_cli("export", "tiny", "--storage", f"sqlite:///{store}", "--format", "json", "-o", str(out), cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    records = json.loads(out.read_text())
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{store}")
    by_number = {t.number: t for t in study.get_trials()}
    assert len(records) == 4
    for rec in records:
        t = by_number[rec["number"]]
        assert rec["params"] == t.params and rec["mean_test_score"] == t.value
        assert rec["std_test_score"] == 0.0 and rec["mean_fit_time"] > 0
    csv = run_cli("export", "tiny", "--storage", f"sqlite:///{store}", "--format", "csv", cwd=workdir)
    header = csv.stdout.splitlines()[0].split(",")
    assert {"param_model__batchnorm", "param_model__dropout", "mean_test_score", "std_test_score"} <= set(header)


def test_same_file_gives_same_scores(tmp_path: Path) -> None:
    """Reproducible on CPU: the sweep seed fixes each trial's seed and TF ops are deterministic."""
    from sweeper.config.spec import load_spec
    from sweeper.search.space import full_params, trial_seed
    from sweeper.train.data import load_dataset
    from sweeper.train.runtime import configure_tensorflow
    from sweeper.train.trial import run_trial

    configure_tensorflow()
    spec = load_spec(write_sweep(tmp_path / "s.yaml"))
    ds = load_dataset(spec.data)
    params = full_params(spec, {"model__batchnorm": True, "model__dropout": 0.2})
    first = run_trial(spec, ds, params, trial_seed(spec, params))
    again = run_trial(spec, ds, params, trial_seed(spec, params))
    assert first.curve == again.curve and first.val_loss == again.val_loss


def test_kfold_reports_mean_and_std(tmp_path: Path) -> None:
    from sweeper.config.spec import load_spec
    from sweeper.search.space import full_params
    from sweeper.train.data import load_dataset
    from sweeper.train.runtime import configure_tensorflow
    from sweeper.train.trial import run_trial

    configure_tensorflow()
    spec = load_spec(write_sweep(tmp_path / "s.yaml", validation={"kfold": 3}))
    result = run_trial(spec, load_dataset(spec.data), full_params(spec, {"model__batchnorm": False, "model__dropout": 0.0}), 3)
    assert len(result.split_scores) == 3
    assert result.mean_test_score == pytest.approx(sum(result.split_scores) / 3)
    import numpy as np

    assert result.std_test_score == pytest.approx(float(np.std(result.split_scores)))
