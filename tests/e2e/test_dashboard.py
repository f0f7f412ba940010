"""optuna-dashboard as the live view of a sweep: a study made by `sweeper run` opened through
optuna-dashboard's own WSGI app and JSON API shows the objective's name, the metrics as
sortable number columns, and which trials are duplicates."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from conftest import run_cli, write_sweep

optuna_dashboard = pytest.importorskip("optuna_dashboard", reason="pip install -e '.[dashboard]'")


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def dashboard(workdir: Path) -> Iterator[str]:
    """A sweep run by the CLI (random search on 2 points: it repeats one), then the dashboard on its store."""
    sweep = write_sweep(workdir / "dash.yaml", name="dash", method="random", trials=4,
                        params={"model__dropout": [0.0, 0.2]},
                        data={"dataset": "digits", "limit": 200}, training={"epochs": 1, "batch_size": 64, "model__units": 8})
    res = run_cli("run", str(sweep), "--quiet", "--no-report", cwd=workdir)
    assert res.returncode == 0, res.stderr
    app = optuna_dashboard.wsgi(f"sqlite:///{workdir / 'store.db'}")
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return json.loads(resp.read().decode())


def test_dashboard_shows_metric_names_sortable_metrics_and_duplicates(dashboard: str) -> None:
    (study,) = [s for s in get(dashboard + "/api/studies")["study_summaries"] if s["study_name"] == "dash"]
    detail = get(f"{dashboard}/api/studies/{study['study_id']}?after=0")
    assert detail["objective_names"] == ["accuracy"]  # not 'Objective 0'
    sortable = {a["key"]: a["sortable"] for a in detail["union_user_attrs"]}
    for name in ("val_loss", "fit_time", "n_params", "epochs_run", "std_test_score", "train_accuracy"):
        assert sortable.get(name) is True, (name, sortable)  # numbers: the trials table sorts by them
    trials = detail["trials"]
    assert len(trials) == 4
    for t in trials:
        attrs = {a["key"]: a["value"] for a in t["user_attrs"]}
        assert float(attrs["epochs_run"]) == 1 and int(attrs["n_params"]) > 0 and float(attrs["fit_time"]) > 0
    twins = [t for t in trials if any(a["key"] == "duplicate_of" for a in t["user_attrs"])]
    assert len(twins) >= 2  # 4 trials on 2 points: the repeats say whose result they took
