"""The one module that knows HiPlot (archived upstream): rows -> its parallel plot and table.

Replace this module to swap the plotting library; the rest of the report passes plain rows
(dicts of column -> value) and places the returned HTML fragment on its own pages.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any, Sequence

from sweeper.report.escape import esc, script_literal

# The bundle's CSS @imports a web font; drop it so the page makes no network request offline.
_WEB_FONT = '@import\\"https://fonts.googleapis.com/css?family=Lato:400,700,400italic&display=swap\\"'

_SETUP = """<script type="text/javascript">
(function () {
  function setup() {
    var options = {};
    Object.assign(options, eval('(' + %(options)s + ')'));
    var instance = hiplot.render(document.getElementById(%(element)s), options);
    Object.assign(window, {'hiplot_last_instance': instance});
  }
  if (document.readyState == "complete") { setup(); }
  else { document.addEventListener("DOMContentLoaded", setup); }
})();
</script>"""


@functools.lru_cache(maxsize=1)
def _bundle() -> str:
    import hiplot

    path = Path(hiplot.__file__).parent / "static" / "built" / "hiplot.bundle.js"
    # Inlined as is, so it must not hold a closing script tag (HiPlot's own page inlines it too).
    return path.read_text(encoding="utf-8").replace(_WEB_FONT, "")


def _table_safe(value: Any) -> Any:
    """HiPlot's table (DataTables) puts cell values into the page as HTML, and its jQuery runs
    any <script> in them (checked in Chromium): strings reach HiPlot HTML-escaped, so the table
    shows them as text. The plot's axis labels, drawn as text, then show such rare values
    (with <, > or &) in their escaped form: a cosmetic cost, not a hole."""
    if isinstance(value, str):
        return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return value


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


PAD = 0.04  # of an axis's span, above and below: no line lies on the axis's end (hidden by it)


def _padded(values: Sequence[float], log: bool) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if log:  # pad by a factor: the bounds stay positive
        f = (hi / lo) ** PAD if hi > lo else 1.5
        return lo / f, hi * f
    span = hi - lo if hi > lo else (abs(hi) or 1.0)
    return lo - PAD * span, hi + PAD * span


def ranked_labels(rows: Sequence[dict[str, Any]], col: str, by: str, maximize: bool) -> dict[Any, str]:
    """Labels for a categorical column's values, numbered by the mean of ``by`` over the rows
    holding each value (1 = best; values no scored row holds come last): HiPlot orders a
    categorical axis by its labels as text, so the numbers order the axis."""
    scores: dict[Any, list[float]] = {}
    for r in rows:
        if col in r:
            scores.setdefault(r[col], [])
            if _number(r.get(by)):
                scores[r[col]].append(float(r[by]))
    sign = -1.0 if maximize else 1.0
    order = sorted(scores, key=lambda v: (not scores[v], sign * sum(scores[v]) / len(scores[v]) if scores[v] else 0.0,
                                          str(v)))
    width = len(str(len(order)))
    return {v: f"{i:0{width}d}. {_text(v)}" for i, v in enumerate(order, 1)}


def _text(v: Any) -> str:
    return "(empty)" if v is None or v == "" else str(v).lower() if isinstance(v, bool) else str(v)


def experiment_options(
    rows: Sequence[dict[str, Any]],
    order: Sequence[str],
    color_by: str,
    log_columns: Sequence[str] = (),
    hidden: Sequence[str] = (),
    categorical: Sequence[str] = (),
    ranked: Sequence[str] = (),
    maximize: bool = True,
    absent: str | None = None,
) -> dict[str, Any]:
    """HiPlot's render options for ``rows``: parallel plot columns in ``order`` (left to right),
    lines coloured by ``color_by``, ``log_columns`` on log axes, the table below. Columns of
    numbers are numeric axes (sorted as numbers in the table too), padded so that no trial lies
    on an axis's end; ``ranked`` columns holding text or booleans are numbered and ordered by
    the mean of ``color_by`` (best on top). ``absent``: the value of a parameter a trial does
    not have: the table shows it; a numeric axis stays numeric and the trial's line breaks
    there; a text axis shows it as a value of its own, unnumbered."""
    import hiplot as hip

    def text(v: Any) -> bool:
        return v is not None and v != absent and not _number(v)

    present = {k for r in rows for k in r}
    labels = {c: ranked_labels([r for r in rows if absent is None or r.get(c) != absent], c, color_by, maximize)
              for c in ranked if c in present and c not in categorical and any(text(r.get(c)) for r in rows)}
    if absent is not None:
        for found in labels.values():
            found[absent] = absent
    shown = [{k: _table_safe(labels[k][v] if k in labels else v) for k, v in r.items()} for r in rows]
    exp = hip.Experiment.from_iterable(shown)
    for col in sorted(present - set(categorical) - set(labels)):
        values = [float(r[col]) for r in rows if _number(r.get(col))]
        if not values or any(text(r.get(col)) for r in rows):
            continue  # text: HiPlot's own (categorical) axis
        log = col in log_columns and min(values) > 0  # a log axis needs positive values
        pd = exp.parameters_definition[col]
        pd.type = hip.ValueType.NUMERIC_LOG if log else hip.ValueType.NUMERIC
        pd.force_range(*_padded(values, log))
    for col in list(categorical) + list(labels):
        if col in present:
            exp.parameters_definition[col].type = hip.ValueType.CATEGORICAL
    if color_by in present:
        exp.colorby = color_by
    exp.display_data(hip.Displays.PARALLEL_PLOT).update({
        # HiPlot lays out its "order" from the right: reversed, the first column is leftmost.
        "order": [c for c in reversed(order) if c in present],
        "hide": [c for c in hidden if c in present] + ["uid", "from_uid"],
        "invert": list(labels),  # HiPlot puts a categorical axis's first label at the bottom: 1 on top
    })
    exp.display_data(hip.Displays.TABLE).update({"hide": ["uid", "from_uid"]})
    exp.enabled_displays = [hip.Displays.PARALLEL_PLOT, hip.Displays.TABLE]
    exp.validate()
    return {"dataProviderName": "none", "experiment": exp._asdict()}


# HiPlot leaves 10 px left of its first axis, where that axis's value labels go: room for them.
PLOT_CSS = ".sw-hiplot{padding-left:80px}.sw-hiplot .pplot-root svg{overflow:visible}"


def plot_fragment(options: dict[str, Any], element_id: str = "sweeper-hiplot") -> str:
    """HTML for a page body: the plot's container, HiPlot's bundle and the set-up script.
    The data sits in a script: every '</' in it is escaped, so no value can end the script."""
    literal = script_literal(json.dumps(options))
    return (
        f"<style>{PLOT_CSS}</style>"
        f'<div id="{esc(element_id)}" class="sw-hiplot" style="background-color: white">'
        '<div style="text-align: center">Loading HiPlot...</div>'
        "<noscript>HiPlot needs JavaScript to run</noscript></div>\n"
        f'<script type="text/javascript">{_bundle()}</script>\n'
        + _SETUP % {"options": literal, "element": script_literal(element_id)}
    )


def parallel_plot_html(
    rows: Sequence[dict[str, Any]],
    order: Sequence[str],
    color_by: str,
    log_columns: Sequence[str] = (),
    hidden: Sequence[str] = (),
    title: str = "HiPlot",
) -> str:
    """A full HTML document holding only the plot and its table."""
    body = plot_fragment(experiment_options(rows, order, color_by, log_columns, hidden))
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title></head>\n<body style=\"margin:0px\">{body}</body></html>\n"
    )


# JavaScript for tests and benchmarks: how to read HiPlot's own rendered state in a browser.
# The parallel plot draws on a <canvas>, one ``path(row)`` call per line, in animation frames;
# these expressions find that component through React's fibre tree.
_FIND = """
function sweeperFindHiplot() {
  var out = {root: null, pplot: null};
  var c = document.querySelector('.sw-hiplot') || document.querySelector('[id^=hiplot_]');
  if (!c || !c._reactRootContainer) return out;
  (function walk(f) {
    for (; f; f = f.sibling) {
      var s = f.stateNode;
      if (s && s.state && s.state.rows_all_unfiltered && !out.root && s.getColorForRow) out.root = s;
      if (s && s.foreground_ref && s.paths && s.path) out.pplot = s;
      walk(f.child);
    }
  })(c._reactRootContainer._internalRoot.current);
  return out;
}
"""

READY_JS = """
(function () {
""" + _FIND + """
  var h = sweeperFindHiplot();
  if (!h.root || !h.pplot || !h.pplot.foreground) return false;
  var cv = h.pplot.foreground_ref.current, ctx = cv.getContext('2d');
  var data = ctx.getImageData(0, 0, cv.width, cv.height).data;
  for (var i = 3; i < data.length; i += 4 * 97) if (data[i] > 0) return true;
  return false;
})()
"""
"""Truthy once the plot has its rows and has drawn lines on its canvas."""

RECOUNT_JS = """
(function () {
""" + _FIND + """
  // Redraw the lines, counting each row the plot draws on its foreground canvas.
  var h = sweeperFindHiplot(), p = h.pplot;
  window.__sweeperDrawn = {calls: 0, uids: {}};
  var original = p.path;
  p.path = function (row, ctx, color) {
    if (ctx === p.foreground) { window.__sweeperDrawn.calls += 1; window.__sweeperDrawn.uids[row.uid] = 1; }
    return original.apply(this, arguments);
  };
  p.setState(function (s) { return {brush_count: s.brush_count + 1}; });
  return true;
})()
"""
"""Starts a full redraw of the parallel plot that counts the lines drawn."""

COUNT_JS = """
(function () {
""" + _FIND + """
  var h = sweeperFindHiplot(), d = window.__sweeperDrawn || {calls: 0, uids: {}};
  var info = document.querySelector('.dataTables_info');
  return {
    rows: h.root ? h.root.state.rows_all_unfiltered.length : -1,
    selected: h.root ? h.root.state.rows_selected.length : -1,
    drawn_calls: d.calls,
    drawn_rows: Object.keys(d.uids).length,
    table_info: info ? info.textContent : null,
    axes: Array.prototype.map.call(document.querySelectorAll('.sw-hiplot svg .dimension'), function (g) {
      return g.__data__;
    }).reverse()
  };
})()
"""
"""What was drawn: HiPlot's rows, the selected rows, lines drawn since RECOUNT_JS, the table's
'Showing 1 to 10 of N entries' text and the axes left to right."""
