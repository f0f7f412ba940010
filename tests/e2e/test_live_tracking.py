"""Live tracking (the sweep file's ``tracking``) through ``sweeper run --workers 2`` with a cheap
trial function: every trial (complete, pruned, failed) is logged once to MLflow (read back with
``mlflow.search_runs`` on a ``file:`` URI) and to TensorBoard (read back with its event
multiplexer); an export afterwards adds no run; a sink that fails warns and the sweep goes on;
an unreachable tracking URI and a bad ``tracking`` key are one line, exit 2, no study."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import run_cli, write_sweep
from test_export_tracking import read_tensorboard

pytest.importorskip("mlflow")
SWEEP = dict(trial_function="trial_functions:curve_or_fail",
             params={"model__units": [1, 2, 3], "model__dropout": [0.0, 0.2]},
             pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0})


def url(work: Path) -> str:
    return f"sqlite:///{work / 'store.db'}"


def mlflow_runs(uri: str, experiment: str, monkeypatch: pytest.MonkeyPatch) -> list:
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file: store only when asked to
    mlflow.set_tracking_uri(uri)
    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def test_live_sweep_logs_every_trial_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uri, tb = (tmp_path / "mlruns").as_uri(), tmp_path / "tb"
    sweep = write_sweep(tmp_path / "live.yaml", name="live", **SWEEP,
                        tracking={"tensorboard": str(tb), "mlflow": uri, "experiment": "live-exp"})
    res = run_cli("run", str(sweep), "--workers", "2", "--quiet", "--no-report", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr, res.stderr
    stored = optuna.load_study(study_name="live", storage=url(tmp_path)).get_trials()
    assert len(stored) == 6 and {t.state.name for t in stored} == {"COMPLETE", "PRUNED", "FAIL"}

    def check() -> None:
        runs = mlflow_runs(uri, "live-exp", monkeypatch)
        children = [r for r in runs if "sweeper.trial" in r.data.tags]
        parents = [r for r in runs if "sweeper.trial" not in r.data.tags]
        assert len(parents) == 1 and len(children) == len(stored), [r.data.tags for r in runs]
        by_number = {int(r.data.tags["sweeper.trial"]): r for r in children}
        assert sorted(by_number) == [t.number for t in stored]
        for t in stored:
            run = by_number[t.number]
            assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
            assert run.data.params == {k: str(v) for k, v in t.params.items()}
            want = {"COMPLETE": ("complete", "FINISHED"), "PRUNED": ("pruned", "KILLED"),
                    "FAIL": ("failed", "FAILED")}[t.state.name]
            assert (run.data.tags["sweeper.state"], run.info.status) == want
            if t.state.name == "COMPLETE":
                assert run.data.metrics["accuracy"] == pytest.approx(t.value)
        board = read_tensorboard(tb)
        config = board.pop(".")["config"]
        state = next(h for h in config.hparam_infos if h.name == "state")
        assert {"complete", "pruned", "failed"} <= {v.string_value for v in state.domain_discrete.values}
        assert sorted(board) == [f"trial-{t.number:04d}" for t in stored]
        for t in stored:
            run = board[f"trial-{t.number:04d}"]
            assert run["hparams"]["model__units"] == pytest.approx(t.params["model__units"])
            curve = [v for _, v in sorted(t.intermediate_values.items())]
            assert [v for _, v in run["scalars"].get("epoch/val_accuracy", [])] == pytest.approx(curve)
        for folder in (tb, *tb.glob("trial-*")):
            assert len(list(folder.glob("events.out.tfevents.*"))) == 1, folder

    check()
    for args in (("--format", "mlflow", "--tracking-uri", uri, "--experiment", "live-exp"),
                 ("--format", "tensorboard", "--out", str(tb))):
        res = run_cli("export", "live", "--storage", url(tmp_path), *args, cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    check()  # the export found the live runs again: the same number of runs

    # Another tracking on the stored study is a growth, not another definition.
    sweep = write_sweep(tmp_path / "live.yaml", name="live", **SWEEP, tracking={"tensorboard": str(tmp_path / "tb2")})
    res = run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path)
    assert res.returncode == 0, res.stderr


def test_failing_sink_warns_and_the_sweep_goes_on(tmp_path: Path) -> None:
    (tmp_path / "blocked").write_text("a file, not a folder")
    sweep = write_sweep(tmp_path / "s.yaml", name="blk", **SWEEP, tracking={"tensorboard": str(tmp_path / "blocked")})
    res = run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    warnings = [line for line in res.stderr.splitlines() if "warning: tracking.tensorboard" in line]
    assert len(warnings) == 7, res.stderr  # the hparams config, then each of the 6 trials
    assert all("the sweep goes on" in line for line in warnings)
    stored = optuna.load_study(study_name="blk", storage=url(tmp_path)).get_trials()
    assert len(stored) == 6 and {t.state.name for t in stored} == {"COMPLETE", "PRUNED", "FAIL"}


@pytest.mark.parametrize("tracking, words", [
    ({"mlflow": "http://127.0.0.1:9"}, "tracking.mlflow http://127.0.0.1:9: cannot reach the MLflow tracking store"),
    ({"tensorbord": "tb"}, "tracking.tensorbord: unknown key"),
    ({"mlflow": 3}, "tracking.mlflow: 3 is not a tracking URI"),
    ({"experiment": "x"}, "tracking: give 'tensorboard: DIR', 'mlflow: URI' or both"),
])
def test_bad_tracking_is_one_line_exit_2_nothing_stored(tmp_path: Path, tracking: dict, words: str) -> None:
    sweep = write_sweep(tmp_path / "s.yaml", name="bad", **SWEEP, tracking=tracking)
    res = run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path)
    assert res.returncode == 2 and words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (tmp_path / "store.db").exists() or not optuna.get_all_study_names(url(tmp_path))
    assert not (tmp_path / "tb").exists()


def test_tracking_without_mlflow_installed_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture) -> None:
    import sys

    from sweeper.cli import main

    sweep = write_sweep(tmp_path / "s.yaml", name="nomlflow", **SWEEP, tracking={"mlflow": (tmp_path / "m").as_uri()})
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if MLflow were not installed
    code = main(["run", str(sweep), "--quiet", "--no-report"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "sweeper: error: tracking.mlflow needs MLflow: pip install 'sweeper[mlflow]'"
    assert not (tmp_path / "store.db").exists() or not optuna.get_all_study_names(url(tmp_path))
    assert not (tmp_path / "m").exists()
