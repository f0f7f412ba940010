"""A study -> MLflow: one parent run for the study (the sweep definition as an artifact), one
nested run per trial with its params, its final metrics by name, its per-epoch validation curve
as metric steps, its state and number as tags (and its kept models as artifacts). Runs are found
again by their tags (``sweeper.study``, ``sweeper.trial``), so exporting again updates them:
only what is missing is logged, nothing is duplicated. Needs ``pip install 'sweeper[mlflow]'``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import optuna
import yaml

from sweeper.config.spec import SweepSpec
from sweeper.errors import SweeperError
from sweeper.store import artifacts
from sweeper.tracking.mlflow_runs import (
    DEFAULT_EXPERIMENT,
    connect,
    parent_run,
    runs,
    trial_run,
)
from sweeper.tracking.records import TrialRecord, records

__all__ = ["DEFAULT_EXPERIMENT", "export"]


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
    found = runs(client, exp_id, spec.name)
    parent_id = parent_run(client, exp_id, spec, found).info.run_id
    recs = records(study, spec)
    client.log_batch(parent_id, tags=_study_tags(spec, recs))
    with tempfile.TemporaryDirectory() as tmp:
        sweep = Path(tmp) / "sweep.yaml"
        sweep.write_text(yaml.safe_dump(spec.raw, sort_keys=False))
        client.log_artifact(parent_id, str(sweep))
    for r in recs:
        run = trial_run(client, exp_id, parent_id, spec, r, found.get(str(r.number)))
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
