"""Reports: a study in the store -> ``reports/STUDY/index.html`` (static, offline) with PNG
figures beside it; ``best-trial/index.html`` for the best trial (``--best``); comparisons.

The study is read once into plain rows (``collect``); insights, figures and pages take those
rows, and only ``hiplot_page`` knows the plotting library.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

import optuna

from sweeper.config.spec import SweepSpec
from sweeper.report.collect import ABSENT, LOG_PARAMS, StudyData, collect
from sweeper.report.pareto import objective_axes

__all__ = ["LOG_PARAMS", "plot_html", "plot_rows", "report_dir", "write_compare", "write_report"]

HIDDEN = ["trial", "val_loss", "mean_fit_time", "epochs_run"]
BEST_DIR = "best-trial"  # not best/: `sweeper best` keeps its refitted models there


def plot_rows(study: optuna.Study, spec: SweepSpec) -> list[dict[str, Any]]:
    """One row per trial: params by their routed names, the objective, the state."""
    from sweeper.report.collect import plot_rows as rows_of

    return rows_of(collect(study, spec))


def plot_html(study: optuna.Study, spec: SweepSpec) -> str:
    """The report's parallel-coordinates plot as one self-contained HTML fragment (for notebooks)."""
    return _plot(collect(study, spec))


def report_dir(out_dir: str | Path, name: str) -> Path:
    return Path(out_dir) / _safe_dirname(name)


def _plot(data: StudyData) -> str:
    from sweeper.report.collect import plot_rows as rows_of
    from sweeper.report.hiplot_page import experiment_options, plot_fragment

    rows = rows_of(data)
    if not rows:
        return "<div class='sw'><p class='muted'>No trials yet: nothing to plot.</p></div>"
    options = experiment_options(
        rows,
        order=["state"] + data.params + objective_axes(data),
        color_by=data.metric,
        log_columns=data.log_params,
        hidden=HIDDEN,
        categorical=["state"],
        ranked=data.params,  # a parameter's text values in order of their mean objective
        maximize=data.maximize,
        absent=ABSENT,  # a conditional parameter a trial does not have
    )
    return plot_fragment(options)


def write_report(study: optuna.Study, spec: SweepSpec, out_dir: str | Path = "reports", *,
                 best: Any = False) -> Path:
    """Write ``out_dir/STUDY/index.html`` (and its figures) and return its path. ``best``: the best
    trial's refit on its split (deliver.best_split_refit; None when there is nothing to refit),
    drawn as ``best-trial/index.html``; False: no best-trial page."""
    from sweeper.report import figures, importance, insights, pages, pareto

    pending = importance.start(study, list(spec.params))  # large studies: a second process, meanwhile
    data = collect(study, spec)
    target = report_dir(out_dir, spec.name)
    target.mkdir(parents=True, exist_ok=True)
    done = data.complete()
    figs = pages.Figures()
    if done:
        for i, p in enumerate(data.params, 1):
            name = f"effect-{i}.png"
            figures.effect_plot(p, done, data.metric, p in data.log_params, target / name)
            figs.effects.append((p, name))
        if figures.curves_plot(data.ranked(), data.metric, target / "curves.png"):
            figs.curves = "curves.png"
    best_link = None
    if best is not False:
        from sweeper.report.best import write_best

        write_best(data, spec, best, target / BEST_DIR)
    if (target / BEST_DIR / "index.html").exists():
        best_link = f"{BEST_DIR}/index.html"
    extra, plot = pareto.section(data, target), _plot(data)
    imp = pending()
    found = insights.insights(data.trials, data.params, data.metric, data.maximize, imp.order(),
                              {p: s for p in imp.order() if (s := imp.score(p)) is not None})
    page = pages.index_page(data, plot, found, imp, figs, best_link, extra=extra)
    path = target / "index.html"
    _write_atomic(path, page)
    return path


def write_compare(studies: Sequence[tuple[optuna.Study, SweepSpec]], out_dir: str | Path = "reports") -> Path:
    """One parallel plot across studies (a ``study`` column says which); returns the page's path."""
    from sweeper.report import pages
    from sweeper.report.collect import plot_rows as rows_of
    from sweeper.report.hiplot_page import experiment_options, plot_fragment

    datas = [collect(s, spec) for s, spec in studies]
    rows = [r for d in datas for r in rows_of(d, study_column="study")]
    params = list(dict.fromkeys(p for d in datas for p in d.params))
    metrics = list(dict.fromkeys(d.metric for d in datas))
    logs = list(dict.fromkeys(p for d in datas for p in d.log_params))
    options = experiment_options(
        rows, order=["study", "state"] + params + metrics, color_by=metrics[0],
        log_columns=logs, hidden=HIDDEN, categorical=["study", "state"], absent=ABSENT,
    )
    names = [d.name for d in datas]
    label = "-".join(_safe_dirname(n) for n in names)
    if len(label) > 80:
        label = label[:60] + "-" + hashlib.sha256("\0".join(names).encode()).hexdigest()[:12]
    path = Path(out_dir) / f"compare-{label}" / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, pages.compare_page(datas, plot_fragment(options)))
    return path


def _write_atomic(path: Path, text: str) -> None:
    # The report server may read the page while it is rewritten: replace it in one step.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _safe_dirname(name: str) -> str:
    from sweeper.paths import safe_dirname

    return safe_dirname(name)
