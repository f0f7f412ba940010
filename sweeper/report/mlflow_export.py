"""A study -> MLflow: one parent run for the study (the sweep definition as an artifact), one
nested run per trial with its params, its final metrics by name, its per-epoch validation curve
as metric steps, its state and number as tags (and its kept models as artifacts). Runs are found
again by their tags (``sweeper.study``, ``sweeper.trial``), so exporting again updates them:
only what is missing is logged, nothing is duplicated. Needs ``pip install 'sweeper[mlflow]'``."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml

from sweeper.config.spec import SweepSpec
from sweeper.errors import SweeperError
from sweeper.report.tracking import TrialRecord, records
from sweeper.store import artifacts

STUDY_TAG = "sweeper.study"
TRIAL_TAG = "sweeper.trial"  # absent on the study's parent run
STATE_TAG = "sweeper.state"
CURVE_METRIC = "val_curve"  # the per-epoch validation curve: one step per epoch
DEFAULT_EXPERIMENT = "sweeper"


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError:
        raise SweeperError("--format mlflow needs MLflow: pip install 'sweeper[mlflow]'") from None
    return mlflow


def connect(uri: str, experiment: str) -> tuple[Any, str]:
    """A client of ``uri`` and the id of ``experiment`` (made if need be); an unreachable or
    unusable tracking URI is a one-line SweeperError, fast (no retries)."""
    _mlflow()
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    if uri.startswith("file:"):  # MLflow 3 keeps its file store only for those who opt in
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    try:
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        exp_id = found.experiment_id if found is not None else client.create_experiment(experiment)
    except Exception as exc:  # MlflowException, OSError, requests' errors: all mean "cannot use it"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SweeperError(f"--tracking-uri {uri}: cannot reach the MLflow tracking store ({first[:200]})") from None
    return client, exp_id


def _runs(client: Any, exp_id: str, study: str) -> dict[str | None, Any]:
    """The runs an earlier export made for ``study``: by trial number (as text), None the parent."""
    found: dict[str | None, Any] = {}
    token = None
    while True:
        page = client.search_runs([exp_id], filter_string=f"tags.`{STUDY_TAG}` = '{study}'",
                                  max_results=1000, page_token=token)
        for run in page:
            found.setdefault(run.data.tags.get(TRIAL_TAG), run)
        token = page.token
        if not token:
            return found


def _value(v: Any) -> str:
    return str(v)[:6000]


def _log_missing(client: Any, run: Any, fresh: bool, params: dict[str, Any], metrics: dict[str, float],
                 curve: list[float], tags: dict[str, str], wall_ms: int) -> None:
    """Log what ``run`` lacks: params it has not, metric steps it has not (or whose value
    differs), every tag (tags may change). A ``fresh`` run (made now) lacks everything."""
    from mlflow.entities import Metric, Param, RunTag

    def history(key: str) -> dict[int, float]:
        return {} if fresh else {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}

    new_params = [Param(k, _value(v)) for k, v in params.items() if k not in run.data.params]
    new_metrics = []
    last = max(len(curve) - 1, 0)
    for name, value in metrics.items():
        if history(name).get(last) != value:
            new_metrics.append(Metric(name, value, wall_ms, last))
    if curve:
        have = history(CURVE_METRIC)
        new_metrics += [Metric(CURVE_METRIC, v, wall_ms, e) for e, v in enumerate(curve) if have.get(e) != v]
    client.log_batch(run.info.run_id, metrics=new_metrics, params=new_params,
                     tags=[RunTag(k, v) for k, v in tags.items()])


def _trial_run(client: Any, exp_id: str, parent_id: str, spec: SweepSpec, r: TrialRecord, run: Any) -> Any:
    fresh = run is None
    if fresh:
        run = client.create_run(exp_id, start_time=int((r.start_s or 0) * 1000) or None,
                                run_name=f"{spec.name}-trial-{r.number}",
                                tags={STUDY_TAG: spec.name, TRIAL_TAG: str(r.number), "mlflow.parentRunId": parent_id})
        run = client.get_run(run.info.run_id)
    wall_ms = int((r.end_s or r.start_s or 0) * 1000)
    tags = {STATE_TAG: r.outcome, "sweeper.trial_state": r.state}
    if r.reason:
        tags["sweeper.reason"] = r.reason[:5000]
    _log_missing(client, run, fresh, r.params, r.metrics, r.curve, tags, wall_ms)
    if r.status in ("FINISHED", "FAILED", "KILLED"):
        client.set_terminated(run.info.run_id, status=r.status, end_time=int((r.end_s or 0) * 1000) or None)
    else:
        client.update_run(run.info.run_id, status=r.status)
    return run


def _upload_kept(client: Any, study: optuna.Study, spec: SweepSpec, r: TrialRecord, run_id: str) -> None:
    """The trial's kept models under ``model/`` (once: skipped when the run has them)."""
    if not r.kept or client.list_artifacts(run_id, "model"):
        return
    try:
        kept = artifacts.kept(study, spec, r.number)
    except SweeperError:
        return  # removed or moved since: nothing to upload
    with tempfile.TemporaryDirectory() as tmp:
        kept.download(Path(tmp))
        client.log_artifacts(run_id, tmp, "model")


def export(study: optuna.Study, spec: SweepSpec, uri: str, experiment: str = DEFAULT_EXPERIMENT) -> tuple[str, int]:
    """Export the study into ``experiment`` at ``uri``; returns the parent run's id and the
    number of trial runs."""
    client, exp_id = connect(uri, experiment)
    found = _runs(client, exp_id, spec.name)
    parent = found.get(None)
    if parent is None:
        parent = client.create_run(exp_id, run_name=spec.name, tags={STUDY_TAG: spec.name})
    parent_id = parent.info.run_id
    recs = records(study, spec)
    client.log_batch(parent_id, tags=_study_tags(spec, recs))
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep.yaml"
        sweep.write_text(yaml.safe_dump(spec.raw, sort_keys=False))
        client.log_artifact(parent_id, str(sweep))
    for r in recs:
        run = _trial_run(client, exp_id, parent_id, spec, r, found.get(str(r.number)))
        _upload_kept(client, study, spec, r, run.info.run_id)
    client.set_terminated(parent_id, status="FINISHED")
    return parent_id, len(recs)


def _study_tags(spec: SweepSpec, recs: list[TrialRecord]) -> list[Any]:
    from mlflow.entities import RunTag

    outcomes: dict[str, int] = {}
    for r in recs:
        outcomes[r.outcome] = outcomes.get(r.outcome, 0) + 1
    tags = {"sweeper.objectives": ", ".join(spec.objective_names), "sweeper.method": spec.method,
            "sweeper.model": spec.model, "sweeper.dataset": spec.data.dataset, "sweeper.trials": str(len(recs)),
            "sweeper.outcomes": ", ".join(f"{n} {k}" for k, n in sorted(outcomes.items()))}
    return [RunTag(k, v) for k, v in tags.items()]
