"""The example sweeps ship valid and run end to end (shrunk with --set: few images, one epoch,
two trials), and datasets that need a download fail in one line offline."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import run_cli
from optuna.trial import TrialState

from sweeper.cli import main
from sweeper.config.spec import load_spec

SWEEPS = sorted((Path(__file__).resolve().parents[2] / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_example_sweep_is_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.budget or spec.timeout


def test_unreachable_download_is_one_line_and_creates_no_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty Keras cache and a proxy that refuses connections: the download fails fast here
    # and on machines that do have a network.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    sweep = Path(__file__).resolve().parents[2] / "sweeps" / "cifar10_cnn.yaml"
    proc = run_cli("run", str(sweep), "--storage", f"sqlite:///{tmp_path / 'store.db'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("sweeper:")]
    assert len(lines) == 1 and "'cifar10' could not be downloaded" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "store.db").exists()


def shrink(spec_path: Path, csv_32x32x3: Path) -> list[str]:
    """--set overrides that keep a sweep file's own model, search, callbacks and augmentation but
    train it on a few images for one epoch, two trials."""
    spec = load_spec(spec_path)
    sets = ["training.epochs=1", "trials=2"]
    if spec.data.dataset in ("mnist", "fashion_mnist", "cifar10"):  # downloads: a local CSV of that shape
        sets.append(f"data={{dataset: csv, path: '{csv_32x32x3}'}}")
    else:
        sets.append(f"data.limit={120 if spec.model == 'autokeras' else 150}")
    if spec.model == "autokeras":
        sets.append("training.model__max_trials=1")
    for key in ("min_resource", "max_resource", "n_warmup_steps"):  # counted in epochs: at most the one left
        if spec.pruner.options.get(key, 0) > 1:
            sets.append(f"pruner.{key}=1")
    return [arg for s in sets for arg in ("--set", s)]


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_example_sweep_runs_end_to_end(path: Path, tmp_path: Path, cifar_like_csv: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["run", str(path), "--storage", url, "--quiet", *shrink(path, cifar_like_csv)]) == 0
    name = load_spec(path).name
    trials = optuna.load_study(study_name=name, storage=url).get_trials()
    assert len(trials) == 2 and all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), \
        [t.user_attrs.get("error") for t in trials]
    assert any(t.state == TrialState.COMPLETE for t in trials)
    assert (tmp_path / "reports" / name / "index.html").stat().st_size > 10_000
