"""HTML pages from plain data. Every value a user chose (study names, parameter names and
values, labels, error texts) goes through ``esc``; data for scripts through ``script_json``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Sequence

from sweeper.report.collect import ABSENT, StudyData
from sweeper.report.escape import esc, fmt
from sweeper.report.importance import Importances
from sweeper.report.insights import ParamInsight, short_name, value_label

STYLE = """
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#222;background:#fff}
.sw{padding:8px 20px;max-width:1400px}
.sw img{max-width:100%;height:auto}
.sw h1{font-size:22px;margin:10px 0 4px}.sw h2{font-size:18px;margin:22px 0 6px;border-bottom:1px solid #ddd}
.sw table{border-collapse:collapse;margin:4px 0}.sw td,.sw th{border:1px solid #ccc;padding:2px 7px;font-size:13px;text-align:left}
.sw th{background:#f3f3f3}.sw nav a{margin-right:12px}.sw .muted{color:#666;font-size:13px}
.sw figure{display:inline-block;margin:6px 10px 6px 0;vertical-align:top}.sw figcaption{font-size:12px;color:#555}
.sw .clear{color:#0a6e31}.sw .unclear{color:#555}.sw .thin{color:#9a6700}
.sw .bar{display:inline-block;height:10px;background:#4c78a8}
.sw li{margin:3px 0}.sw code{font-size:12px}
"""


def document(title: str, body: str, head: str = "") -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
        '<link rel="icon" href="data:,">'
        f"<style>{STYLE}</style>{head}</head>\n<body>\n{body}\n</body></html>\n"
    )


def _minutes(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{short_name(k)}={value_label(v)}" for k, v in params.items())


def summary_html(data: StudyData) -> str:
    """Study facts: dataset and model, trials by state, time spent, best trial and its params."""
    best = data.best()
    facts = [
        ("dataset", esc(data.dataset)),
        ("model", esc(data.model) + (f" (trial function {esc(data.trial_function)})" if data.trial_function else "")),
        ("search", f"{esc(data.method)} over {len(data.params)} parameters: "
                   + ", ".join(f"<code>{esc(p)}</code>" for p in data.params)),
        ("objective", f"{esc(data.metric)} ({esc(data.direction)}), validation {esc(data.validation)}"),
        ("trials", esc(data.progress.text())),  # the words and counts of show, ls and serve
        ("time in trials", f"{_minutes(data.wall_in_trials_s)} wall-clock, {_minutes(data.time_in_trials_s)} "
                           "summed over trials (trials that ran at once each count)"
         + (f" (first start {esc(data.first_start)}, last completion {esc(data.last_complete)})" if data.first_start else "")),
    ]
    if data.packing:
        facts.append(("fused training", esc(data.packing)))
    if data.warm_start:
        facts.append(("warm start", esc(data.warm_start) + "; marked in the trials' warm_start column"))
    if best is not None:
        extra = f" ± {fmt(best['std'])}" if best.get("std") else ""
        facts.append(("best trial", f"#{best['number']}: {esc(data.metric)} <b>{esc(fmt(best['value']))}</b>{esc(extra)}"
                                    f" with {esc(_params_text(best['params']))}"))
    rows = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in facts)
    desc = f"<p>{esc(data.description)}</p>" if data.description else ""
    return f'<div id="sweeper-summary">{desc}<table class="sw-facts">{rows}</table></div>'


def insights_html(found: Sequence[ParamInsight], data: StudyData) -> str:
    n = len(data.complete())
    if n < 2:
        return "<p class='thin'>Not enough completed trials for any insight yet.</p>"
    items = []
    for pi in found:
        imp = f" <span class='muted'>(importance {pi.importance:.2f})</span>" if pi.importance is not None else ""
        if pi.note:
            items.append(f"<li class='sw-insight thin' data-param='{esc(pi.param)}' data-verdict='thin'>{esc(pi.note)}{imp}</li>")
            continue
        # Headline: the first clear comparison (best value vs the next best), else the first one.
        head = next((c for c in pi.comparisons if c.verdict == "clear"), pi.comparisons[0])
        rest = "".join(
            f"<li class='sw-comparison {esc(c.verdict)}' data-verdict='{esc(c.verdict)}'>{esc(c.text)}</li>"
            for c in pi.comparisons if c is not head
        )
        items.append(
            f"<li class='sw-insight {esc(pi.verdict)}' data-param='{esc(pi.param)}' data-verdict='{esc(pi.verdict)}'>"
            f"<b>{esc(head.text)}</b>{imp}" + (f"<ul>{rest}</ul>" if rest else "") + "</li>"
        )
    return (
        "<p class='muted'>Computed from the completed trials, parameters in order of importance. "
        "Each 95% interval is for that comparison alone: among many comparisons about one in twenty "
        "may look clear by chance. Paired comparisons match trials that differ only in that parameter; "
        "unpaired ones (random or TPE search) mix in the other parameters, which a sampler like TPE "
        "does not spread evenly. 'Too few trials' means fewer than 3 on a side.</p>"
        f"<ol id='sweeper-insights'>{''.join(items)}</ol>"
    )


def importances_html(imp: Importances, params: Sequence[str]) -> str:
    if not imp.by_evaluator:
        return f"<p class='thin'>{esc(imp.note or 'no importances')}</p>"
    labels = list(imp.by_evaluator)
    head = "<tr><th>parameter</th>" + "".join(
        f"<th>{esc(lab)} <span class='muted'>({imp.n_trials[lab]} trials)</span></th>" for lab in labels) + "</tr>"
    body = ""
    for p in imp.order() + [p for p in params if p not in imp.order()]:
        cells = ""
        for lab in labels:
            v = imp.by_evaluator[lab].get(p)
            cells += ("<td></td>" if v is None else
                      f"<td><span class='bar' style='width:{max(1, round(v * 160))}px'></span> {v:.3f}</td>")
        within = f" <span class='muted'>(where it exists: {imp.within[p]} trials)</span>" if p in imp.within else ""
        body += f"<tr><td><code>{esc(p)}</code>{within}</td>{cells}</tr>"
    note = f"<p class='muted'>{esc(imp.note)}</p>" if imp.note else ""
    if imp.within:  # conditional parameters: compared only among the trials that have them
        note += ("<p class='muted'>A parameter that exists only under a condition (<code>when:</code>) is "
                 "scored among the trials that have it, as its share there.</p>")
    return (f"<table id='sweeper-importances'>{head}{body}</table>"
            "<p class='muted'>Optuna's evaluators (normalised to sum to 1). fANOVA is Optuna's default; it sees "
            "a random sample of at most 200 trials (16 trees), mean decrease impurity (a random forest) up to 500.</p>" + note)


def top_table_html(data: StudyData, k: int = 10) -> str:
    ranked = data.ranked()[:k]
    if not ranked:
        return "<p class='muted'>No completed trial yet.</p>"
    cols = data.params
    head = "<tr><th>trial</th>" + "".join(f"<th>{esc(short_name(c))}</th>" for c in cols) + (
        f"<th>{esc(data.metric)}</th><th>std</th><th>val_loss</th><th>fit time (s)</th><th>epochs</th></tr>")
    body = ""
    for t in ranked:
        body += (f"<tr><td>{t['number']}</td>" + "".join(
                 f"<td>{esc(fmt(t['params'][c]) if c in t['params'] else ABSENT)}</td>" for c in cols)
                 + "".join(f"<td>{esc(fmt(t.get(c)))}</td>" for c in ("value", "std", "val_loss", "fit_time", "epochs_run"))
                 + "</tr>")
    return f"<table class='sw-top'>{head}{body}</table>"


def failures_html(data: StudyData, k: int = 20) -> str:
    """Failed trials (they count) with their whole reason; interrupted ones with their re-run
    (not counted); suspects (running or queued, to run alone) with why; duplicates with their twin."""
    out = ""
    for kinds, title, anchor in ((("failed",), "Failures", "failures"),
                                 (("interrupted",), "Interrupted and re-run", "interrupted"),
                                 (("running", "queued"), "Suspects (each runs alone next)", "suspects"),
                                 (("duplicate",), "Duplicates", "duplicates")):
        items = [t for t in data.trials if t.get("outcome") in kinds and (kinds[0] != "running" or t.get("reason"))]
        if not items:
            continue
        lis = "".join(f"<li style='white-space:pre-wrap'>trial {t['number']}: {_outcome_text(t)}</li>" for t in items[:k])
        more = f"<p class='muted'>and {len(items) - k} more (sweeper show lists them all)</p>" if len(items) > k else ""
        out += f"<h2 id='{anchor}'>{title} ({len(items)})</h2><ul>{lis}</ul>{more}"
    return out


def _outcome_text(t: dict[str, Any]) -> str:
    if t["outcome"] == "duplicate":
        return f"duplicate of trial {t['link']}"
    reason = esc(t["reason"] or "no reason stored")
    if t["outcome"] == "interrupted":
        return reason + (f" (re-run as trial {t['link']})" if t["link"] is not None else " (not queued again yet)")
    return reason


@dataclass
class Figures:
    """File names (in the report folder) of the figures the index links to."""

    effects: list[tuple[str, str]] = field(default_factory=list)  # (parameter, file)
    curves: str | None = None


def index_page(
    data: StudyData,
    plot: str,
    found: Sequence[ParamInsight],
    imp: Importances,
    figs: Figures,
    best_link: str | None = None,
    extra: str = "",
) -> str:
    """The study report: summary, parallel plot and trial table, insights, importances,
    effect plots, validation curves, top trials, failures. ``extra``: HTML placed before the
    insights (several objectives: report/pareto.py's section)."""
    effects = "".join(
        f"<figure><a href='{esc(f)}'><img src='{esc(f)}' alt='{esc(data.metric)} by {esc(p)}' loading='lazy'></a>"
        f"<figcaption>{esc(short_name(p))}</figcaption></figure>"
        for p, f in figs.effects
    ) or "<p class='muted'>No completed trial yet.</p>"
    curves = (f"<a href='{esc(figs.curves)}'><img src='{esc(figs.curves)}' alt='validation curves' loading='lazy'></a>"
              if figs.curves else "<p class='muted'>No per-epoch curves stored.</p>")
    best = (f"<a href='{esc(best_link)}'>best trial page</a>" if best_link else
            "<span class='muted'>best trial page: <code>sweeper report STUDY --best</code></span>")
    nav = ("<nav><a href='#plot'>parallel plot &amp; trials</a><a href='#insights'>insights</a>"
           "<a href='#importances'>importances</a><a href='#effects'>effects</a><a href='#curves'>curves</a>"
           f"<a href='#top'>top trials</a>{best}</nav>")
    body = (
        f"<div class='sw'><h1>sweeper study: {esc(data.name)}</h1>{nav}{summary_html(data)}"
        "<h2 id='plot'>Parallel coordinates and trials</h2>"
        "<p class='muted'>One line per trial, parameters left, objective right, coloured by the objective. "
        "Failed and pruned trials are grey and have no objective (they sit at its 'nan/inf/null' mark); "
        "the <code>state</code> axis tells them apart; drag on an axis to select a range. "
        "The table under the plot lists every trial." + (
            f" A parameter a trial does not have (its <code>when:</code> condition failed) reads {ABSENT}: "
            "a list's axis shows it as a value of its own, a range's axis leaves the line broken there."
            if data.when else "") + "</p></div>"
        f"{plot}"
        f"<div class='sw'>{extra}<h2 id='insights'>Insights</h2>{insights_html(found, data)}"
        f"<h2 id='importances'>Parameter importances</h2>{importances_html(imp, data.params)}"
        f"<h2 id='effects'>Effect of each parameter</h2>{effects}"
        f"<h2 id='curves'>Validation curves</h2>{curves}"
        f"<h2 id='top'>Top trials</h2>{top_table_html(data)}"
        f"{failures_html(data)}"
        f"<p class='muted'>report made {esc(dt.datetime.now().isoformat(sep=' ', timespec='seconds'))}</p></div>"
    )
    return document(f"{data.name} · sweeper", body)


def compare_page(datas: Sequence[StudyData], plot: str) -> str:
    rows = ""
    for d in datas:
        best = d.best()
        rows += (f"<tr><td>{esc(d.name)}</td><td>{esc(d.dataset)}</td><td>{esc(d.model)}</td>"
                 f"<td>{esc(d.metric)} ({esc(d.direction)})</td><td>{len(d.trials)}</td>"
                 f"<td>{esc(fmt(best['value'])) if best else ''}</td>"
                 f"<td>{esc(_params_text(best['params'])) if best else ''}</td></tr>")
    names = ", ".join(d.name for d in datas)
    body = (
        f"<div class='sw'><h1>sweeper comparison: {esc(names)}</h1>"
        "<table id='sweeper-compare'><tr><th>study</th><th>dataset</th><th>model</th><th>objective</th>"
        f"<th>trials</th><th>best</th><th>best params</th></tr>{rows}</table>"
        "<p class='muted'>One line per trial of every study; the <code>study</code> axis (left) says which.</p></div>"
        f"{plot}"
    )
    return document(f"compare {names} · sweeper", body)


def best_page(name: str, facts: list[tuple[str, str]], images: list[tuple[str, str]], note: str = "") -> str:
    """The best trial's page: refit facts, then its figures (file, caption)."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in facts)
    figs = "".join(
        f"<figure><a href='{esc(f)}'><img src='{esc(f)}' alt='{esc(c)}'></a><figcaption>{esc(c)}</figcaption></figure><br>"
        for f, c in images
    )
    body = (f"<div class='sw'><h1>best trial of {esc(name)}</h1><nav><a href='../index.html'>back to the study</a></nav>"
            f"<table id='sweeper-best'>{rows}</table>"
            + (f"<p class='muted'>{esc(note)}</p>" if note else "") + f"{figs}</div>")
    return document(f"best trial · {name} · sweeper", body)


def studies_page(rows: Sequence[dict[str, Any]], storage: str, refresh_s: int) -> str:
    """``sweeper serve``'s index: one row per study (link, trials by outcome, best, last update)."""
    body = ""
    for r in rows:
        states = esc(r["outcomes"]) or "no trials"
        body += (f"<tr><td><a href='{esc(r['href'])}'>{esc(r['name'])}</a></td><td>{esc(r.get('dataset', ''))}</td>"
                 f"<td>{esc(r.get('model', ''))}</td><td>{states}</td><td>{esc(fmt(r['best']))}</td>"
                 f"<td>{esc(r['last'] or '')}</td></tr>")
    table = ("<table id='sweeper-studies'><tr><th>study</th><th>dataset</th><th>model</th><th>trials</th>"
             f"<th>best</th><th>last update</th></tr>{body}</table>") if rows else "<p>No studies in this store yet.</p>"
    html = (f"<div class='sw'><h1>sweeper studies</h1><p class='muted'>store {esc(storage)} · "
            f"this page refreshes every {refresh_s} s</p>{table}</div>")
    return document("sweeper studies", html, head=f'<meta http-equiv="refresh" content="{int(refresh_s)}">')
