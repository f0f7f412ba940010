"""The report's parts for several objectives: each trial's values, Pareto rank and feasibility
on its row, the Pareto-front figure (first two objectives, feasible front highlighted, points
labelled by trial number, its data in the page as JSON), and insights per objective.

The front itself is decided in store/pareto.py; this module only draws and words it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from optuna.trial import FrozenTrial

from sweeper.config.spec import SweepSpec
from sweeper.report.escape import esc, script_json
from sweeper.report.insights import MIN_N, short_name, value_label
from sweeper.store.pareto import is_feasible, pareto_ranks

FIGURE = "pareto.png"
DATA_ID = "sweeper-pareto-data"
MAX_LABELS = 200  # trial numbers drawn beside points; more would be unreadable (the data lists all)


def annotate(rows: list[dict[str, Any]], trials: Sequence[FrozenTrial], spec: SweepSpec) -> None:
    """Add ``values`` (objective -> value), ``pareto_rank`` and ``feasible`` to each trial row."""
    ranks = pareto_ranks(trials, spec.directions) if spec.multi_objective else {}
    by_number = {t.number: t for t in trials}
    for r in rows:
        t = by_number[r["number"]]
        complete = r["state"] == "complete" and t.values
        r["values"] = dict(zip(spec.objective_names, t.values)) if complete else {}
        r["pareto_rank"] = ranks.get(r["number"])
        r["feasible"] = is_feasible(t)


def objective_axes(data: Any) -> list[str]:
    """The parallel plot's right-hand columns: every objective, then the Pareto rank."""
    extra = ["pareto_rank"] if len(data.objectives) > 1 else []
    return [data.metric] + list(data.objectives[1:]) + extra


def plot_columns(data: Any, t: dict[str, Any]) -> dict[str, Any]:
    """The objectives after the first, the Pareto rank and feasibility for one plot row."""
    row: dict[str, Any] = {}
    values = t.get("values") or {}
    for name in data.objectives[1:]:
        v = values.get(name)
        row[name] = float(f"{v:.4g}") if isinstance(v, (int, float)) and math.isfinite(v) else None
    if len(data.objectives) > 1:
        row["pareto_rank"] = t.get("pareto_rank")
    if data.constraints:
        row["feasible"] = {True: "yes", False: "no"}.get(t.get("feasible"), "")
    return row


def front_data(data: Any) -> dict[str, Any]:
    """What the figure draws, for tests and readers: the first two objectives of every completed
    trial, which are feasible and which are on the front."""
    x_name, y_name = data.objectives[:2]
    points = [{"trial": t["number"], x_name: t["values"][x_name], y_name: t["values"][y_name],
               "feasible": t.get("feasible") is not False, "pareto_rank": t.get("pareto_rank")}
              for t in data.trials if t.get("values") and t.get("duplicate_of") is None]
    return {"x": x_name, "y": y_name, "points": points,
            "front": sorted(p["trial"] for p in points if p["pareto_rank"] == 1)}


def pareto_figure(data: Any, path: Path) -> dict[str, Any]:
    """The first two objectives, one dot per completed trial (infeasible ones as crosses), the
    feasible front highlighted and joined; returns the figure's data."""
    from sweeper.report.figures import _figure, _save

    info = front_data(data)
    fig = _figure(6.4, 4.4, margins=(0.13, 0.13, 0.97, 0.9))
    ax = fig.add_subplot()
    pts = info["points"]
    rest = [p for p in pts if p["feasible"] and p["pareto_rank"] != 1]
    bad = [p for p in pts if not p["feasible"]]
    front = sorted((p for p in pts if p["pareto_rank"] == 1), key=lambda p: p[info["x"]])
    x, y = info["x"], info["y"]
    if rest:
        ax.scatter([p[x] for p in rest], [p[y] for p in rest], s=14, color="#9ecae1", label="dominated")
    if bad:
        ax.scatter([p[x] for p in bad], [p[y] for p in bad], s=18, marker="x", color="#999999", label="infeasible")
    if front:
        ax.plot([p[x] for p in front], [p[y] for p in front], "-o", color="#d62728", ms=5, lw=1.5, label="Pareto front")
    labelled = front + (rest + bad if len(pts) <= MAX_LABELS else [])
    for p in labelled:
        ax.annotate(str(p["trial"]), (p[x], p[y]), textcoords="offset points", xytext=(3, 3), fontsize=7)
    ax.set_xlabel(f"{x} ({'max' if data.directions[0] == 'maximize' else 'min'})")
    ax.set_ylabel(f"{y} ({'max' if data.directions[1] == 'maximize' else 'min'})")
    ax.set_title(f"Pareto front: {len(front)} of {len(pts)} completed trials", fontsize=10)
    ax.grid(alpha=0.3)
    if pts:
        ax.legend(loc="best", fontsize=8)
    _save(fig, path)
    return info


# --------------------------------------------------------------------------- insights
_UNITS = {"accuracy": (100.0, "pts accuracy", 1), "loss": (1.0, "loss", 3), "n_params": (1e-3, "k parameters", 1),
          "fit_time": (1.0, "s fit time", 2), "latency_ms": (1.0, "ms/image latency", 3)}


def _effect_text(metric: str, diff: float) -> str:
    scale, unit, digits = _UNITS.get(metric, (1.0, metric, 3))
    return f"{round(diff * scale, digits) + 0.0:+.{digits}f} {unit}"


def objective_insights(data: Any) -> list[str]:
    """Per parameter with a few values: its best value (by the first objective) against each
    other one, as the mean difference on every objective, e.g. 'batchnorm on vs off: +2.1 pts
    accuracy, +0.4 k parameters (24 vs 24 trials)'. Means of the groups, no interval."""
    done = [t for t in data.trials if t.get("values") and t.get("duplicate_of") is None]
    out = []
    sign = 1.0 if data.directions[0] == "maximize" else -1.0
    first = data.objectives[0]
    for param in data.params:
        groups: dict[str, list[dict[str, Any]]] = {}
        labels: dict[str, str] = {}
        for t in done:
            if param in t["params"]:
                key = repr(t["params"][param])
                groups.setdefault(key, []).append(t)
                labels[key] = value_label(t["params"][param])
        if not 2 <= len(groups) <= 8:
            continue
        mean = {k: {m: float(np.mean([t["values"][m] for t in g])) for m in data.objectives} for k, g in groups.items()}
        best = max(groups, key=lambda k: sign * mean[k][first])
        for k in sorted((k for k in groups if k != best), key=lambda k: -sign * mean[k][first]):
            effects = ", ".join(_effect_text(m, mean[best][m] - mean[k][m]) for m in data.objectives)
            few = " (too few trials to tell)" if min(len(groups[best]), len(groups[k])) < MIN_N else ""
            out.append(f"{short_name(param)} {labels[best]} vs {labels[k]}: {effects} "
                       f"({len(groups[best])} vs {len(groups[k])} trials){few}")
    return out


def section(data: Any, target: Path) -> str:
    """The report's 'Several objectives' section (empty for one objective)."""
    if len(data.objectives) < 2:
        return ""
    info = pareto_figure(data, target / FIGURE)
    front = ", ".join(str(n) for n in info["front"]) or "none yet"
    limits = (f" Constraints: {esc(', '.join(data.constraints))}; infeasible trials are grey crosses, never on "
              "the front." if data.constraints else "")
    items = "".join(f"<li>{esc(line)}</li>" for line in objective_insights(data))
    return (
        "<h2 id='pareto'>Pareto front</h2>"
        f"<p class='muted'>{esc(info['x'])} against {esc(info['y'])}, one point per completed trial, labelled "
        f"with its trial number; the feasible non-dominated trials (Pareto rank 1) are joined in red.{limits}</p>"
        f"<p id='sweeper-pareto-trials'>Pareto trials: {esc(front)}</p>"
        f"<a href='{FIGURE}'><img src='{FIGURE}' alt='Pareto front' loading='lazy'></a>"
        f"<script type='application/json' id='{DATA_ID}'>{script_json(info)}</script>"
        "<h2 id='objective-insights'>Insights per objective</h2>"
        "<p class='muted'>Each parameter's best value by the first objective against the others: the "
        "difference of the group means on every objective.</p>"
        f"<ul id='sweeper-objective-insights'>{items}</ul>"
    )
