"""MLflow runs of a study, made by the export (report/mlflow_export.py) and by the live sink
(tracking/live.py) alike: one parent run for the study, one nested run per trial with its params,
its final metrics by name, its per-epoch validation curve as metric steps, its state and number as
tags. Runs are found again by their tags (``sweeper.study``, ``sweeper.trial``), so writing a trial
again updates its run: only what is missing is logged, nothing is duplicated."""

from __future__ import annotations

import os
from typing import Any

from sweeper.config.spec import SweepSpec
from sweeper.errors import SweeperError
from sweeper.tracking.records import TrialRecord

STUDY_TAG = "sweeper.study"
TRIAL_TAG = "sweeper.trial"  # absent on the study's parent run
STATE_TAG = "sweeper.state"
CURVE_METRIC = "val_curve"  # the per-epoch validation curve: one step per epoch
DEFAULT_EXPERIMENT = "sweeper"


def _mlflow(who: str) -> Any:
    try:
        import mlflow
    except ImportError:
        raise SweeperError(f"{who} needs MLflow: pip install 'sweeper[mlflow]'") from None
    return mlflow


def connect(uri: str, experiment: str, key: str = "--tracking-uri", who: str = "--format mlflow") -> tuple[Any, str]:
    """A client of ``uri`` and the id of ``experiment`` (made if need be); an unreachable or
    unusable tracking URI is a one-line SweeperError naming ``key``, fast (no retries)."""
    _mlflow(who)
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
        raise SweeperError(f"{key} {uri}: cannot reach the MLflow tracking store ({first[:200]})") from None
    return client, exp_id


def runs(client: Any, exp_id: str, study: str, trial: str | None = None) -> dict[str | None, Any]:
    """The runs an earlier export (or live sink) made for ``study``: by trial number (as text),
    None the parent; ``trial``: only that trial's run (or "" the parent)."""
    found: dict[str | None, Any] = {}
    token = None
    where = f"tags.`{STUDY_TAG}` = '{study}'"
    if trial:
        where += f" and tags.`{TRIAL_TAG}` = '{trial}'"
    while True:
        page = client.search_runs([exp_id], filter_string=where, max_results=1000, page_token=token)
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


def trial_run(client: Any, exp_id: str, parent_id: str, spec: SweepSpec, r: TrialRecord, run: Any) -> Any:
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


def parent_run(client: Any, exp_id: str, spec: SweepSpec, found: dict[str | None, Any]) -> Any:
    """The study's parent run: the one ``found`` holds, else made now."""
    parent = found.get(None)
    if parent is None:
        parent = client.create_run(exp_id, run_name=spec.name, tags={STUDY_TAG: spec.name})
    return parent


def find_parent(client: Any, exp_id: str, spec: SweepSpec) -> Any:
    """The study's parent run, found by its tags (the one without a trial tag; every page of the
    study's runs read), else made now."""
    return parent_run(client, exp_id, spec, runs(client, exp_id, spec.name))
