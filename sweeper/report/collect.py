"""A study -> plain data for the report: one dict per trial and the study's facts.

The only report module that reads Optuna objects (besides importances, which use Optuna's
evaluators); everything downstream takes these plain rows, so the plotting stays replaceable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from sweeper.config import conditions
from sweeper.config.spec import SweepSpec
from sweeper.report import pareto
from sweeper.store import results, warm
from sweeper.store.keys import METRICS_ATTR, PLACEMENT_ATTR, REVISIONS_ATTR, WARM_ATTR
from sweeper.store.placement import placement_label
from sweeper.store.progress import requeued_numbers, revision_of, study_outcomes

# What the plot and its table show for a parameter that does not exist in a trial (``when:``).
ABSENT = "(absent)"
# Parameters a person reads on a log scale even when the sweep lists values (not a log range).
LOG_PARAMS = ("optimizer__learning_rate", "model__l2", "optimizer__weight_decay")


@dataclass
class StudyData:
    """What a report shows about one study, as plain Python values."""

    name: str
    dataset: str
    model: str
    method: str
    metric: str
    direction: str
    validation: str
    description: str
    params: list[str]
    log_params: list[str]
    trial_function: str | None
    budget: int | None
    trials: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    time_in_trials_s: float = 0.0  # compute time: every trial's duration, summed
    wall_in_trials_s: float = 0.0  # wall time: while at least one trial ran (packed and parallel trials once)
    first_start: str | None = None
    last_complete: str | None = None
    revisions: int = 0  # how often the definition grew (each trial row has its "revision")
    progress: Any = None  # store.progress.Progress: the counts every command shows
    objectives: list[str] = field(default_factory=list)  # every objective, the first is ``metric``
    directions: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)  # their labels, e.g. 'n_params <= 200000'
    packing: str | None = None  # how trials were packed (compute.fuse), train/fused/trials.py words
    when: dict[str, Any] = field(default_factory=dict)  # conditional parameters: their conditions
    warm_start: str | None = None  # what the study started with (warm_start:), e.g. '12 trials from study X'

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def complete(self) -> list[dict[str, Any]]:
        """Trained and completed trials with a finite objective (a sampler's duplicate, which
        took its twin's result, is no new evidence: left out; a grid point trained twice counts
        twice here, as it was measured twice)."""
        return [t for t in self.trials if t["state"] == "complete" and t["duplicate_of"] is None and _finite(t["value"])]

    def ranked(self) -> list[dict[str, Any]]:
        """Completed trials, best first."""
        return sorted(self.complete(), key=lambda t: t["value"], reverse=self.maximize)

    def best(self) -> dict[str, Any] | None:
        ranked = self.ranked()
        return ranked[0] if ranked else None


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def trial_dict(t: FrozenTrial, requeued: set[int]) -> dict[str, Any]:
    """One trial as plain values: number, state, params, value, metrics, curve, times, error."""
    flat = results.trial_row(t, requeued)
    metrics = t.user_attrs.get(METRICS_ATTR) or {}
    curve = [float(v) for _, v in sorted(t.intermediate_values.items())]
    if not curve and isinstance(metrics.get("curve"), list):
        curve = [float(v) for v in metrics["curve"]]
    return {
        "number": t.number,
        "state": flat["state"],
        "params": dict(t.params),
        "value": flat["mean_test_score"],
        "std": flat["std_test_score"],
        "val_loss": flat["val_loss"],
        "train_accuracy": flat["train_accuracy"],
        "fit_time": flat["mean_fit_time"],
        "epochs_run": flat["epochs_run"],
        "n_params": flat["n_params"],
        "curve": curve,
        "duration_s": flat["duration_s"],
        "completed": t.datetime_complete.isoformat(sep=" ", timespec="seconds") if t.datetime_complete else None,
        "error": flat["error"],
        "retried": flat["retried"],
        "duplicate_of": flat["duplicate_of"],
        "warm_start": warm_label(t.user_attrs.get(WARM_ATTR)),
        "placement": placement_label(t.user_attrs.get(PLACEMENT_ATTR)),
    }


def warm_label(attr: Any) -> str | None:
    """Where a warm-started trial came from: 'study X #N' or 'FILE row I' (None: trained here)."""
    if not isinstance(attr, dict):
        return None
    if "study" in attr:
        return f"study {attr['study']} #{attr.get('number')}"
    return f"{attr.get('csv')} row {attr.get('row')}"



def packing_text(setting: str | int, packs: Sequence[dict[str, Any] | None]) -> str | None:
    """How a study's trials were packed, for the report (``packs``: each trained trial's stored
    ``fused`` facts, None for one trained alone); None when the sweep does not ask to fuse."""
    if setting == "off":
        return None
    fused_ones = [p for p in packs if p]
    sizes = sorted({int(p["pack_trials"]) for p in fused_ones})
    fits = sorted({int(p["pack_fits"]) for p in fused_ones})
    text = f"compute.fuse {setting}: {len(fused_ones)} of {len(packs)} trained trials in packs"
    if sizes:
        text += f" of {', '.join(map(str, sizes))} trials ({', '.join(map(str, fits))} fits as one model)"
    return text


def wall_seconds(spans: list[tuple[Any, Any]]) -> float:
    """Seconds during which at least one of the (start, end) spans ran: trials of one pack or of
    parallel workers overlap, and their summed durations would count that time several times."""
    total, reach = 0.0, None
    for start, end in sorted((s, e) for s, e in spans if s is not None and e is not None):
        if reach is None or start > reach:
            total, reach = total + (end - start).total_seconds(), end
        elif end > reach:
            total, reach = total + (end - reach).total_seconds(), end
    return total


def collect(study: optuna.Study, spec: SweepSpec) -> StudyData:
    trials = study.get_trials(deepcopy=False)
    requeued = requeued_numbers(trials)
    rows = [trial_dict(t, requeued) for t in trials]
    prog, found = study_outcomes(study, spec)
    revisions = list(study.user_attrs.get(REVISIONS_ATTR) or [])
    for r, o in zip(rows, found):
        r["revision"] = revision_of(r["number"], revisions)
        # What became of it, in the words every command uses (the plot's ``state`` axis too).
        r["outcome"], r["link"], r["reason"] = o.kind, o.link, o.reason
    pareto.annotate(rows, trials, spec)  # values per objective, Pareto rank, feasibility
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    log_params = [n for n, p in spec.params.items() if p.log or n in LOG_PARAMS]
    return StudyData(
        name=spec.name,
        dataset=spec.data.dataset + (f" (limit {spec.data.limit})" if spec.data.limit else ""),
        model=spec.model,
        method=spec.method,
        metric=spec.metric,
        direction=spec.direction,
        validation=f"{spec.kfold}-fold CV" if spec.kfold else f"holdout {spec.holdout:g}",
        description=spec.description,
        params=list(spec.params),
        log_params=log_params,
        trial_function=spec.trial_function,
        budget=spec.budget,
        trials=rows,
        counts=counts,
        time_in_trials_s=sum(r["duration_s"] or 0.0 for r in rows),
        wall_in_trials_s=wall_seconds([(t.datetime_start, t.datetime_complete) for t in trials]),
        first_start=min(starts).isoformat(sep=" ", timespec="seconds") if starts else None,
        last_complete=max(ends).isoformat(sep=" ", timespec="seconds") if ends else None,
        revisions=len(revisions),
        progress=prog,
        objectives=spec.objective_names,
        directions=spec.directions,
        constraints=[c.label() for c in spec.constraints],
        packing=packing_text(spec.compute.fuse, [((t.user_attrs.get(METRICS_ATTR) or {}).get("model") or {}).get("fused")
                                                 for t in trials if t.user_attrs.get(METRICS_ATTR)]),
        warm_start=warm.summary(study),
        when={n: p.when for n, p in spec.params.items() if p.when},
    )


def _shown(v: Any) -> Any:
    """A score as the plot's table shows it: 4 significant digits, not 16."""
    return float(f"{v:.4g}") if _finite(v) else v


def plot_rows(data: StudyData, study_column: str | None = None) -> list[dict[str, Any]]:
    """One row per trial for the parallel plot: params by their routed names, the state, the
    objective (empty for failed/pruned trials), and a few metrics for the table."""
    out = []
    placed = len({t.get("placement") for t in data.trials}) > 1  # a column only where trials ran apart
    for t in data.trials:
        row: dict[str, Any] = {}
        if study_column is not None:
            row[study_column] = data.name
        row.update({k: _shown(v) if isinstance(v, float) else v for k, v in t["params"].items()})
        for name, when in data.when.items():  # a conditional parameter whose condition failed here
            if t["params"] and name not in t["params"] and not conditions.holds(when, t["params"]):
                row[name] = ABSENT
        row["state"] = t.get("outcome", t["state"])
        row["trial"] = t["number"]
        if data.warm_start:
            row["warm_start"] = t.get("warm_start") or ""  # where an earlier trial came from
        if placed:
            row["placement"] = t.get("placement") or ""  # which engine, worker and host ran it
        if data.revisions:
            row["revision"] = t["revision"]  # which definition of a grown study it ran under
        row[data.metric] = _shown(t["value"])
        row.update(pareto.plot_columns(data, t))  # the other objectives, Pareto rank, feasibility
        row["val_loss"] = _shown(t["val_loss"])
        row["mean_fit_time"] = _shown(t["fit_time"])
        row["epochs_run"] = t["epochs_run"]
        out.append(row)
    return out
