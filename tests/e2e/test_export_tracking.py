"""``sweeper export --format tensorboard|mlflow``: studies made by ``sweeper run`` (cheap trial
functions, and one tiny Keras sweep that keeps its best model) read back with the readers users
use: TensorBoard's event multiplexer and its hparams plugin data, and ``mlflow.search_runs`` on
a ``file:`` tracking URI. Counts, params and metric values equal the store's; exporting twice
gives the same runs; several objectives; one-line errors with exit code 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import run_cli, write_sweep

from sweeper.store.keys import KEPT_ATTR

pytest.importorskip("mlflow")
STUDIES = {
    # A grid of 6 on the per-epoch curve; units=2 learns nothing and is pruned at epoch 0.
    "cur": dict(trial_function="trial_functions:curve", params={"model__units": [1, 2, 3], "model__dropout": [0.0, 0.2]},
                pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0}),
    # A sampler over a range (RealInterval) and an int range (IntInterval).
    "rng": dict(method="random", trials=4, trial_function="trial_functions:curve",
                params={"model__units": {"low": 1, "high": 3}, "model__dropout": {"low": 0.0, "high": 0.5}}),
    # Two objectives.
    "two": dict(trial_function="objective_functions:two_numbers", objective=["accuracy", "fit_time"],
                params={"model__units": [8, 16], "model__dropout": [0.0, 0.3]}),
    # units=1 fails (one failed and one complete trial).
    "bad": dict(trial_function="trial_functions:flaky", params={"model__units": [1, 2]}),
    # A tiny real Keras sweep (stored metrics, a kept model).
    "keras": dict(params={"model__batchnorm": [True, False]}, artifacts={"keep": 1}),
}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("track")
    for name, fields in STUDIES.items():
        res = run_cli("run", str(write_sweep(work / f"{name}.yaml", name=name, **fields)), "--quiet", "--no-report",
                      cwd=work)
        assert res.returncode == 0, res.stderr
    return work


def url(work: Path) -> str:
    return f"sqlite:///{work / 'store.db'}"


def trials(work: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url(work)).get_trials()


def export(work: Path, name: str, *args: str) -> Any:
    return run_cli("export", name, "--storage", url(work), *args, cwd=work)


def expected_metrics(t: optuna.trial.FrozenTrial, objectives: list[str]) -> dict[str, float]:
    """What the store holds for a finished trial: each objective's value, the stored scalars."""
    out: dict[str, float] = {}
    if t.state.name == "COMPLETE":
        out.update(dict(zip(objectives, t.values)))
    metrics = t.user_attrs.get("metrics") or {}
    for key in ("val_loss", "fit_time", "n_params", "epochs_run", "std_test_score", "train_accuracy"):
        if isinstance(metrics.get(key), (int, float)):
            out.setdefault(key, float(metrics[key]))
    return out


def read_tensorboard(folder: Path) -> dict[str, Any]:
    """Every run of the folder through TensorBoard's multiplexer: its hparams, session status
    and the last value of each scalar tag, and the curve tag's steps."""
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(folder))
    mux.Reload()
    runs: dict[str, Any] = {}
    for run, tags in mux.PluginRunToTagToContent(metadata.PLUGIN_NAME).items():
        info: dict[str, Any] = {"scalars": {}}
        for tag, content in tags.items():
            if tag == metadata.EXPERIMENT_TAG:
                info["config"] = metadata.parse_experiment_plugin_data(content)
            elif tag == metadata.SESSION_START_INFO_TAG:
                start = metadata.parse_session_start_info_plugin_data(content)
                info["hparams"] = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
            elif tag == metadata.SESSION_END_INFO_TAG:
                info["status"] = metadata.parse_session_end_info_plugin_data(content).status
        runs[run] = info
    for run, tags in mux.PluginRunToTagToContent("scalars").items():  # as TensorBoard's scalars plugin reads them
        runs[run]["scalars"] = {tag: [(e.step, tensor_util.make_ndarray(e.tensor_proto).item())
                                      for e in mux.Tensors(run, tag)] for tag in tags}
    return runs


def test_tensorboard_hparams_runs_equal_the_store(made: Path) -> None:
    from tensorboard.plugins.hparams import api_pb2

    for name, objectives in (("cur", ["accuracy"]), ("rng", ["accuracy"]), ("two", ["accuracy", "fit_time"]),
                             ("bad", ["accuracy"]), ("keras", ["accuracy"])):
        out = made / f"tb-{name}"
        for _ in range(2):  # exporting again replaces the runs: no duplicates
            res = export(made, name, "--format", "tensorboard", "--out", str(out))
            assert res.returncode == 0, res.stderr
        runs = read_tensorboard(out)
        stored = trials(made, name)
        config = runs.pop(".")["config"]
        assert {m.name.tag for m in config.metric_infos} >= set(objectives) | {"epoch/val_accuracy"}
        domains = {h.name: h for h in config.hparam_infos}
        assert set(domains) == set(STUDIES[name]["params"]) | {"state"}
        assert sorted(runs) == [f"trial-{t.number:04d}" for t in stored]
        for t in stored:
            run = runs[f"trial-{t.number:04d}"]
            assert run["hparams"].keys() == set(t.params) | {"state"}
            for k, v in t.params.items():
                assert run["hparams"][k] == (v if isinstance(v, (str, bool)) else pytest.approx(v)), (name, k, run["hparams"])
            last = {tag: values[-1][1] for tag, values in run["scalars"].items()}
            for metric, value in expected_metrics(t, objectives).items():
                assert last[metric] == pytest.approx(value, rel=1e-6), (name, t.number, metric)
            curve = [v for _, v in sorted(t.intermediate_values.items())]
            assert [v for _, v in run["scalars"].get("epoch/val_accuracy", [])] == pytest.approx(curve)
            assert [s for s, _ in run["scalars"].get("epoch/val_accuracy", [])] == list(range(len(curve)))
            want = {"COMPLETE": api_pb2.STATUS_SUCCESS, "PRUNED": api_pb2.STATUS_UNKNOWN,
                    "FAIL": api_pb2.STATUS_FAILURE}[t.state.name]
            assert run["status"] == want
        if name == "cur":
            assert runs["trial-0001"]["hparams"]["state"] == "complete"
            assert sum(run["hparams"]["state"] == "pruned" for run in runs.values()) == 2  # units=2 twice
        if name == "bad":
            assert [run["hparams"]["state"] for run in runs.values()] == ["failed", "complete"]
        if name == "rng":
            assert domains["model__dropout"].domain_interval.max_value == 0.5
            assert domains["model__units"].type == api_pb2.DATA_TYPE_FLOAT64
            assert domains["model__units"].domain_interval.max_value == 3


def test_mlflow_runs_equal_the_store(made: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = (made / "mlruns").as_uri()
    for name in ("cur", "two", "bad", "keras"):
        for _ in range(2):  # exporting again updates the runs, never duplicates them
            res = export(made, name, "--format", "mlflow", "--tracking-uri", uri, "--experiment", "sweeps")
            assert res.returncode == 0, res.stderr
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads a file: store only when asked to
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    runs = mlflow.search_runs(experiment_names=["sweeps"])
    assert len(runs) == sum(len(trials(made, n)) + 1 for n in ("cur", "two", "bad", "keras"))
    for name, objectives in (("cur", ["accuracy"]), ("two", ["accuracy", "fit_time"]), ("bad", ["accuracy"]),
                             ("keras", ["accuracy"])):
        mine = runs[runs["tags.sweeper.study"] == name]
        parent = mine[mine["tags.sweeper.trial"].isna()]
        assert len(parent) == 1
        parent_id = parent["run_id"].iloc[0]
        assert [a.path for a in client.list_artifacts(parent_id)] == ["sweep.yaml"]
        children = mine[mine["tags.sweeper.trial"].notna()]
        assert set(children["tags.mlflow.parentRunId"]) == {parent_id}
        by_number = {int(r["tags.sweeper.trial"]): r for _, r in children.iterrows()}
        stored = trials(made, name)
        assert sorted(by_number) == [t.number for t in stored]
        for t in stored:
            row = by_number[t.number]
            for k, v in t.params.items():
                assert row[f"params.{k}"] == str(v)
            for metric, value in expected_metrics(t, objectives).items():
                assert row[f"metrics.{metric}"] == pytest.approx(value, rel=1e-9), (name, t.number, metric)
            history = client.get_metric_history(row["run_id"], "val_curve")
            assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
                [(e, pytest.approx(v)) for e, v in sorted(t.intermediate_values.items())]
            state = {"COMPLETE": ("complete", "FINISHED"), "PRUNED": ("pruned", "KILLED"),
                     "FAIL": ("failed", "FAILED")}[t.state.name]
            assert (row["tags.sweeper.state"], row["status"]) == state
            if t.state.name == "FAIL":
                assert row["tags.sweeper.reason"] == "RuntimeError: simulated build failure for units=1"
            models = [a.path for a in client.list_artifacts(row["run_id"], "model")]
            assert models == ([f"model/trial-{t.number}.keras"] if t.user_attrs.get(KEPT_ATTR) else [])
    assert (runs["tags.sweeper.study"] == "keras").sum() == 3
    assert sum(1 for t in trials(made, "keras") if t.user_attrs.get(KEPT_ATTR)) == 1


def test_bad_export_input_is_one_line_exit_2(made: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture) -> None:
    from sweeper.cli import main

    cases = {
        ("nosuch", "--format", "tensorboard", "--out", str(made / "x")): "no study named 'nosuch'",
        ("nosuch", "--format", "mlflow", "--tracking-uri", (made / "y").as_uri()): "no study named 'nosuch'",
        ("cur", "--format", "tensorboard"): "--format tensorboard needs --out DIR",
        ("cur", "--format", "mlflow"): "--format mlflow needs --tracking-uri URI",
        ("cur", "--format", "mlflow", "--tracking-uri", "http://127.0.0.1:9"): "--tracking-uri http://127.0.0.1:9: cannot",
    }
    for args, words in cases.items():
        res = export(made, *args)
        assert res.returncode == 2 and words in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    res = export(made, "cur", "--format", "parquet")
    assert res.returncode == 2 and "invalid choice: 'parquet'" in res.stderr
    assert not (made / "x").exists() and not (made / "y").exists()
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if MLflow were not installed
    code = main(["export", "cur", "--storage", url(made), "--format", "mlflow", "--tracking-uri", "file:///nowhere"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == "sweeper: error: --format mlflow needs MLflow: pip install 'sweeper[mlflow]'"
