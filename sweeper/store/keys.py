"""What sweeper stores on Optuna studies and trials, by attribute name (decided here only)."""

from __future__ import annotations

SPEC_ATTR = "sweeper:spec"  # study user attr: the validated sweep definition (the latest revision)
SEED_RULE_ATTR = "sweeper:seed_rule"  # study user attr: its SweepSpec.seed_rule (absent: 1, older studies)
REVISIONS_ATTR = "sweeper:revisions"  # study user attr: earlier definitions, where each next one starts
WARM_DONE_ATTR = "sweeper:warm_start"  # study user attr: its warm start was added ({source, trials, outside})
WARM_ATTR = "warm_start"  # trial user attr of a warm-started trial: {"study", "number"} or {"csv", "row"}
OWNER_ATTR = "sweeper:owner"  # trial system attr: host, pid, start time of the worker running it
PLACEMENT_ATTR = "placement"  # trial user attr: where it ran (host, engine, worker index, pid, GPUs; store/placement.py)
RETRY_OF_ATTR = "retry_of"  # on a queued re-run: the number of the failed trial it replaces
RETRY_REASON_ATTR = "retry_reason"
ERROR_ATTR = "error"  # a failed trial's error text
DUPLICATE_OF_ATTR = "duplicate_of"  # a sampler's repeat of a completed point: its result, not a re-run
WORKER_DIED_ATTR = "worker_died"  # on a trial failed because its worker died (it is not finished)
WORKER_DEATHS_ATTR = "worker_deaths"  # on a re-queued trial: deaths a supervisor saw while it ran alone
SUSPECT_ATTR = "suspect"  # on a re-queued trial: why its worker's death may be its own (it runs alone next)
METRICS_ATTR = "metrics"  # TrialResult of a completed trial (std, split scores, curve, ...)
# Kept models (store/artifacts.py). Optuna's upload_artifact records each file as a trial system
# attr of its own; KEPT_ATTR lists a trial's files per fit for sweeper. Optuna refuses to change a
# finished trial, so a removal is marked on the study, one attr per trial: REMOVED_PREFIX + number.
ARTIFACTS_ATTR = "sweeper:artifacts"  # study user attr: the folder new kept models go to
KEPT_ATTR = "sweeper:kept_models"  # trial user attr: {"store", "fits": [{"split", "repeat", "artifact_id"}], ...}
UPLOADING_ATTR = "sweeper:uploading"  # trial system attr: {"store", "ids"} of its files, stored before any is written
REMOVED_PREFIX = "sweeper:kept_models_removed:"  # study user attr + trial number: the artifact ids removed
HEARTBEAT_S = 10  # RDB heartbeat interval; a trial is stale after 3 missed beats

# Scalars of METRICS_ATTR also stored as user attrs of their own: optuna-dashboard (and
# ``study.trials_dataframe()``) can show and sort them; the JSON blob stays the full record.
SCALAR_METRICS = ("val_loss", "fit_time", "n_params", "epochs_run", "std_test_score", "train_accuracy")


def scalar_attrs(metrics: dict | None) -> dict[str, float | int]:
    """The finite numbers among ``metrics``' scalars, by name (ints stay ints), rounded as shown."""
    import math

    out: dict[str, float | int] = {}
    for key in SCALAR_METRICS:
        v = (metrics or {}).get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        out[key] = int(v) if isinstance(v, int) or key in ("n_params", "epochs_run") else round(float(v), 6)
    return out
