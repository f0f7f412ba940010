"""Reports: rows from the store -> ``reports/STUDY/index.html`` (static, offline).

The page is HiPlot's document with a summary (escaped) put in front of the plot.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper import results
from sweeper.spec import SweepSpec

LOG_PARAMS = ("optimizer__learning_rate", "model__l2", "optimizer__weight_decay")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.4g}"
    return "" if v is None else str(v)


def plot_rows(study: optuna.Study, spec: SweepSpec) -> list[dict[str, Any]]:
    """One row per trial: params by their routed names, the objective, the state."""
    out = []
    for r in results.rows(study):
        row: dict[str, Any] = {k[len("param_"):]: v for k, v in r.items() if k.startswith("param_")}
        row["state"] = r["state"]
        row["trial"] = r["number"]
        row[spec.metric] = r["mean_test_score"]
        for key in ("val_loss", "mean_fit_time", "epochs_run"):
            row[key] = r[key]
        out.append(row)
    return out


def _summary_html(study: optuna.Study, spec: SweepSpec) -> str:
    trials = study.get_trials(deepcopy=False)
    counts = {s.name.lower(): sum(1 for t in trials if t.state == s) for s in TrialState}
    spent = sum((t.duration.total_seconds() for t in trials if t.duration), 0.0)
    esc = html.escape
    lines = [
        f"<h1>sweeper study: {esc(spec.name)}</h1>",
        f"<p>dataset <b>{esc(spec.data.dataset)}</b> · model <b>{esc(spec.model)}</b> · method "
        f"<b>{esc(spec.method)}</b> · objective <b>{esc(spec.metric)}</b> ({esc(spec.direction)}) · "
        f"validation <b>{esc(f'{spec.kfold}-fold' if spec.kfold else f'holdout {spec.holdout}')}</b></p>",
        "<p>trials: " + ", ".join(f"{n} {esc(k)}" for k, n in counts.items() if n) +
        f" · time in trials {spent / 60:.1f} min</p>",
    ]
    best = results.top(study, 10, spec.direction == "maximize")
    if best:
        cols = [k for k in best[0] if k.startswith("param_")] + ["mean_test_score", "std_test_score", "mean_fit_time"]
        head = "".join(f"<th>{esc(c.removeprefix('param_'))}</th>" for c in ["number"] + cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(_fmt(r.get(c)))}</td>" for c in ["number"] + cols) + "</tr>" for r in best
        )
        lines.append(f"<h2>Top {len(best)} trials</h2><table class='sw-top'><tr>{head}</tr>{body}</table>")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    if failed:
        items = "".join(
            f"<li>trial {t.number}: {esc(str(t.user_attrs.get('error', 'failed')))}</li>" for t in failed[:20]
        )
        lines.append(f"<h2>Failures</h2><ul>{items}</ul>")
    style = (
        "<style>.sw-summary{font-family:sans-serif;padding:8px 16px}.sw-summary table{border-collapse:collapse}"
        ".sw-summary td,.sw-summary th{border:1px solid #ccc;padding:2px 6px;font-size:13px}</style>"
    )
    return style + "<div class='sw-summary' id='sweeper-summary'>" + "".join(lines) + "</div>"


def write_report(study: optuna.Study, spec: SweepSpec, out_dir: str | Path = "reports") -> Path:
    """Write ``out_dir/STUDY/index.html`` and return its path."""
    from sweeper.report.hiplot_page import parallel_plot_html

    rows = plot_rows(study, spec)
    params = list(spec.params)
    page = parallel_plot_html(
        rows,
        order=params + [spec.metric],
        color_by=spec.metric,
        log_columns=[p for p in params if p in LOG_PARAMS],
        hidden=["trial", "val_loss", "mean_fit_time", "epochs_run"],
    )
    page = page.replace("<title>HiPlot</title>", f"<title>{html.escape(spec.name)} · sweeper</title>", 1)
    page = page.replace('<body style="margin:0px">', '<body style="margin:0px">' + _summary_html(study, spec), 1)
    target = Path(out_dir) / _safe_dirname(spec.name) / "index.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    return target


def _safe_dirname(name: str) -> str:
    """A study name as a folder name (any character a user types must still give a path)."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return safe or "study"
