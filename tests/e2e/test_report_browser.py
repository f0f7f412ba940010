"""Reports opened in headless Chromium (DevTools protocol): one line drawn per trial, no
JavaScript error, a screenshot that is not blank, user-chosen names shown as text.

How lines are counted: HiPlot draws the parallel plot on a <canvas>, one ``path(row)`` call
per line, in animation frames. The test finds HiPlot's parallel-plot component through React's
fibre tree, wraps its ``path`` method, asks for a full redraw and counts the distinct rows
drawn on the foreground canvas (``hiplot_page.RECOUNT_JS`` / ``COUNT_JS``); it also checks
HiPlot's own row count and its table's "Showing 1 to 10 of N entries".

Chromium comes from scripts/install_browser.sh. Without it these tests skip, unless
SWEEPER_REQUIRE_BROWSER=1 (CI), where they fail.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna
import pytest
from support import synthetic

from sweeper.report import hiplot_page as hp
from sweeper.report import write_report

INJECTION = "<script>alert(1)</script>"


def _browser_missing() -> str | None:
    from support.browser import find_chromium

    if not find_chromium():
        return "no chromium binary (run scripts/install_browser.sh)"
    try:
        import websocket  # noqa: F401
    except ImportError:
        return "websocket-client is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    missing = _browser_missing()
    if missing:
        if os.environ.get("SWEEPER_REQUIRE_BROWSER") == "1":
            pytest.fail(f"SWEEPER_REQUIRE_BROWSER=1 but {missing}")
        pytest.skip(missing)
    from support.browser import Browser

    with Browser(timeout_s=60) as b:
        yield b


def drawn(b: Any) -> dict[str, Any]:
    """Wait for the plot, redraw it counting lines, and return HiPlot's counts."""
    b.wait_for(hp.READY_JS)
    b.evaluate(hp.RECOUNT_JS)
    b.wait_for(f"(function(){{ var c = {hp.COUNT_JS}; return c.drawn_rows >= c.rows && c.rows > 0; }})()")
    b.settle(0.3)  # let a late error or extra draws arrive
    return b.evaluate(hp.COUNT_JS)


def assert_clean_render(b: Any, n_trials: int) -> dict[str, Any]:
    from support.browser import is_blank

    counts = drawn(b)
    assert counts["rows"] == n_trials, counts
    assert counts["drawn_rows"] == n_trials, counts  # one line per trial
    assert counts["drawn_calls"] == n_trials, counts  # and no trial drawn twice
    assert counts["table_info"].endswith(f"of {n_trials} entries"), counts
    assert not b.errors.all(), b.errors
    assert not is_blank(b.screenshot())
    return counts


@pytest.fixture(scope="module")
def mixed_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A 96-trial synthetic study with failed and pruned trials, reported."""
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    spec = synthetic.make_spec("mixed")
    study = synthetic.make_study(spec, optuna.storages.InMemoryStorage(), 96, fail_rate=0.08, prune_rate=0.08, seed=3)
    return write_report(study, spec, tmp_path_factory.mktemp("mixed")), 96


def test_parallel_plot_draws_one_line_per_trial(browser: Any, mixed_report: tuple[Path, int]) -> None:
    page, n = mixed_report
    browser.open(page.as_uri())
    counts = assert_clean_render(browser, n)
    # Parameters left, objective right; the state axis (failed/pruned apart) leftmost.
    assert counts["axes"][0] == "state" and counts["axes"][-1] == "accuracy", counts["axes"]
    assert set(counts["axes"][1:-1]) == set(synthetic.NOTEBOOK_PARAMS)
    # The other sections rendered, and their figures loaded.
    assert browser.evaluate("document.querySelectorAll('#sweeper-insights > li').length") == len(synthetic.NOTEBOOK_PARAMS)
    # The figures load lazily, as a reader scrolls to them.
    browser.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    browser.wait_for("Array.prototype.every.call(document.images, function (i) { return i.complete; })")
    broken = browser.evaluate(
        "Array.prototype.filter.call(document.images, function (i) { return !(i.complete && i.naturalWidth > 0); })"
        ".map(function (i) { return i.src; })")
    assert broken == [], broken


def test_study_name_with_a_script_shows_as_text(browser: Any, tmp_path: Path) -> None:
    nasty_value = "</script><script>alert(2)</script>"
    spec = synthetic.make_spec(
        INJECTION, params={"model__batchnorm": [True, False], "optimizer__clipnorm": [nasty_value, "1"]},
    )
    study = synthetic.make_study(spec, optuna.storages.InMemoryStorage(), 12, seed=1)
    page = write_report(study, spec, tmp_path)
    text = page.read_text()
    # Raw, neither can appear: in HTML they are escaped, in script data every '</' is '<\/'.
    assert INJECTION not in text and nasty_value not in text and "</script><script>alert" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    browser.open(page.as_uri())
    assert_clean_render(browser, 12)
    assert browser.evaluate("document.title") == f"{INJECTION} · sweeper"
    assert INJECTION in browser.evaluate("document.querySelector('h1').textContent")
    # The value went through HiPlot into its table (DataTables: cells are HTML) as text.
    assert nasty_value in browser.evaluate("document.querySelector('.dataTables_wrapper').innerText")
    assert browser.evaluate("document.querySelectorAll('script').length") == 2  # HiPlot's bundle and set-up
    assert browser.events("Page.javascriptDialogOpening") == []  # no alert() ran


def test_report_fits_a_1400_px_window(browser: Any, mixed_report: tuple[Path, int]) -> None:
    """At 1400 px (the browser's window): no horizontal overflow, every figure inside the page."""
    page, _ = mixed_report
    browser.open(page.as_uri())
    browser.settle(0.5)
    assert browser.evaluate("window.innerWidth") == 1400
    assert browser.evaluate("document.documentElement.scrollWidth") <= 1400
    wide = browser.evaluate("Array.prototype.filter.call(document.images, function (i) {"
                            " return i.getBoundingClientRect().right > 1400; }).length")
    assert wide == 0


def hiplot_options(html: str) -> dict[str, Any]:
    """The options the page passes to hiplot.render (its experiment: rows and column settings)."""
    import json
    import re

    match = re.search(r"eval\('\(' \+ (\".*?\") \+ '\)'\)", html, re.S)
    assert match, "no HiPlot experiment in the page"
    return json.loads(json.loads(match.group(1)))


READABLE_PARAMS = {
    "batch_size": [1024, 2048], "optimizer": ["rmsprop", "adam", "sgd"],
    "optimizer__learning_rate": {"low": 0.0005, "high": 0.05, "log": True},
    "model__batchnorm": [True, False], "model__dropout": [0.2, 0.4],
}


def optimizer_score(p: dict[str, Any]) -> float:
    """sgd well behind, adam a little ahead of rmsprop: the axis must read adam, rmsprop, sgd."""
    return synthetic.notebook_score(p) + {"adam": 0.01, "rmsprop": 0.0, "sgd": -0.03}[p["optimizer"]]


@pytest.fixture(scope="module")
def readable_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A 60-trial random search (text, boolean, numeric and log-range parameters) with failed and
    pruned trials, reported."""
    spec = synthetic.make_spec("readable", method="random", trials=60, params=READABLE_PARAMS)
    study = synthetic.make_study(spec, optuna.storages.InMemoryStorage(), 60, score=optimizer_score,
                                 fail_rate=0.1, prune_rate=0.1, seed=5)
    return write_report(study, spec, tmp_path_factory.mktemp("readable")), study


def test_plot_data_orders_text_values_by_mean_objective_and_pads_numeric_axes(readable_report: tuple[Path, Any]) -> None:
    page, study = readable_report
    exp = hiplot_options(page.read_text())["experiment"]
    rows = [d["values"] for d in exp["datapoints"]]
    defs = exp["parameters_definition"]
    # Text and boolean values are numbered by their mean accuracy, 1 = best (HiPlot orders by label).
    assert sorted({r["optimizer"] for r in rows}) == ["1. adam", "2. rmsprop", "3. sgd"]
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    mean = {b: sum(t.value for t in done if t.params["model__batchnorm"] is b)
            / sum(1 for t in done if t.params["model__batchnorm"] is b) for b in (True, False)}
    best = max(mean, key=mean.get)
    assert {r["model__batchnorm"] for r in rows} == {f"1. {str(best).lower()}", f"2. {str(not best).lower()}"}
    assert defs["optimizer"]["type"] == "categorical" and defs["state"]["type"] == "categorical"
    assert set(hiplot_options(page.read_text())["experiment"]["display_data"]["PARALLEL_PLOT"]["invert"]) == {
        "optimizer", "model__batchnorm"}  # 1 on top
    # Numbers stay numeric axes, padded: the worst trial is not on the bottom edge of any axis.
    for col in ("accuracy", "batch_size", "model__dropout", "optimizer__learning_rate", "trial", "val_loss"):
        values = [r[col] for r in rows if isinstance(r.get(col), (int, float))]
        assert defs[col]["type"] in ("numeric", "numericlog"), (col, defs[col])
        assert defs[col]["force_value_min"] < min(values) and defs[col]["force_value_max"] > max(values), col
    assert defs["optimizer__learning_rate"]["type"] == "numericlog" and defs["optimizer__learning_rate"]["force_value_min"] > 0
    # Numbers are stored as numbers, rounded to what a person reads.
    lrs = [r["optimizer__learning_rate"] for r in rows]
    assert all(isinstance(v, float) and len(repr(v).replace("0.", "").lstrip("0").replace("e-", "")) <= 6 for v in lrs), lrs
    assert all(isinstance(r["trial"], int) and (r["epochs_run"] is None or isinstance(r["epochs_run"], int)) for r in rows)


def test_readable_at_1400_px_labels_unclipped_and_table_sorts_numbers(browser: Any, readable_report: tuple[Path, Any],
                                                                      tmp_path: Path) -> None:
    page, _ = readable_report
    browser.open(page.as_uri())
    assert_clean_render(browser, 60)
    assert browser.evaluate("window.innerWidth") == 1400
    assert browser.evaluate("document.documentElement.scrollWidth") <= 1400  # no horizontal overflow
    # Every axis label and value label lies inside the window (the leftmost axis's were cut off).
    boxes = browser.evaluate(
        "Array.prototype.map.call(document.querySelectorAll('.sw-hiplot svg text'), function (t) {"
        " var r = t.getBoundingClientRect(); return [t.textContent, r.left, r.right]; })"
        ".filter(function (b) { return b[0] && b[2] > b[1]; })")
    assert any(b[0] == "complete" for b in boxes), boxes  # the state axis's values are drawn
    outside = [b for b in boxes if b[1] < 0 or b[2] > 1400]
    assert outside == [], outside
    (tmp_path / "plot-1400.png").write_bytes(browser.screenshot())  # kept for a look when it fails

    def column(name: str) -> list[str]:
        return browser.evaluate(
            "(function () { var head = Array.prototype.map.call(document.querySelectorAll("
            "'.dataTables_wrapper thead th'), function (th) { return th.textContent; });"
            f" var i = head.indexOf({name!r}); return Array.prototype.map.call(document.querySelectorAll("
            "'.dataTables_wrapper tbody tr'), function (tr) { return tr.children[i].textContent; }); })()")

    def click_header(name: str) -> None:
        browser.evaluate(
            "Array.prototype.filter.call(document.querySelectorAll('.dataTables_wrapper thead th'),"
            f" function (th) {{ return th.textContent === {name!r}; }})[0].click()")
        browser.settle(0.2)

    click_header("trial")  # ascending, as numbers: 0, 1, 2, ... not 0, 1, 10, 11
    assert column("trial") == [str(i) for i in range(10)]
    click_header("trial")
    assert column("trial") == [str(i) for i in range(59, 49, -1)]
    click_header("accuracy")
    shown = [c for c in column("accuracy") if c not in ("", "null")]
    assert shown and [float(c) for c in shown] == sorted(float(c) for c in shown)
    assert all(len(c.replace("0.", "", 1)) <= 4 for c in shown), shown  # 4 significant digits, not 16


# Momentum exists for sgd and rmsprop (a range: a numeric axis), nesterov for sgd only (a list).
CONDITIONAL_PARAMS = {
    "optimizer": ["sgd", "rmsprop", "adam"],
    "optimizer__learning_rate": {"low": 0.0005, "high": 0.05, "log": True},
    "optimizer__momentum": {"low": 0.0, "high": 0.95, "when": {"optimizer": ["sgd", "rmsprop"]}},
    "optimizer__nesterov": {"values": [True, False], "when": {"optimizer": "sgd"}},
    "model__dropout": [0.2, 0.4],
}


@pytest.fixture(scope="module")
def conditional_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """A 60-trial random search whose optimizer settings exist only for some optimizers, reported."""
    spec = synthetic.make_spec("conditional", method="random", trials=60, params=CONDITIONAL_PARAMS)
    study = synthetic.make_study(spec, optuna.storages.InMemoryStorage(), 60, score=optimizer_score,
                                 fail_rate=0.1, seed=7)
    return write_report(study, spec, tmp_path_factory.mktemp("conditional")), study


def test_absent_values_are_their_own_in_the_plot_data(conditional_report: tuple[Path, Any]) -> None:
    page, study = conditional_report
    exp = hiplot_options(page.read_text())["experiment"]
    rows = [d["values"] for d in exp["datapoints"]]
    defs = exp["parameters_definition"]
    for r in rows:
        optimizer = r["optimizer"].split(". ", 1)[1]
        assert (r["optimizer__momentum"] == "(absent)") == (optimizer == "adam"), r
        assert (r["optimizer__nesterov"] == "(absent)") == (optimizer != "sgd"), r
    # A range stays a numeric axis (absent trials' lines break there); a list's axis gets a value of its own.
    assert defs["optimizer__momentum"]["type"] == "numeric"
    assert {r["optimizer__nesterov"] for r in rows} == {"(absent)", "1. true", "2. false"} or \
        {r["optimizer__nesterov"] for r in rows} == {"(absent)", "1. false", "2. true"}
    # Insights and importances compare a conditional parameter only among the trials that have it.
    html = page.read_text()
    having = [t for t in study.get_trials() if t.state.name == "COMPLETE" and "optimizer__nesterov" in t.params]
    assert f"(where it exists: {len(having)} trials)" in html
    from sweeper.report import insights

    done = [{"params": t.params, "value": t.value} for t in study.get_trials() if t.state.name == "COMPLETE"]
    found = insights.param_insight("optimizer__nesterov", done, list(CONDITIONAL_PARAMS), "accuracy", True)
    assert sum(c.n_better + c.n_other for c in found.comparisons) == len(having)


def test_conditional_report_renders_with_absent_values_visible(browser: Any,
                                                               conditional_report: tuple[Path, Any]) -> None:
    page, study = conditional_report
    browser.open(page.as_uri())
    assert_clean_render(browser, 60)
    text = browser.evaluate("document.querySelector('.dataTables_wrapper').innerText")
    assert "(absent)" in text
    # On momentum's numeric axis an absent value has no place: the line breaks there. On
    # nesterov's axis it is a value of its own, drawn.
    placed = browser.evaluate("(function () {" + hp._FIND + """
      var p = sweeperFindHiplot().pplot;
      return [p.yscale['optimizer__momentum']('(absent)'), p.yscale['optimizer__nesterov']('(absent)')];
    })()""")
    assert placed[0] is None and isinstance(placed[1], (int, float)), placed  # NaN arrives as null
    labels = browser.evaluate("Array.prototype.map.call(document.querySelectorAll('.sw-hiplot svg text'),"
                              " function (t) { return t.textContent; })")
    assert "(absent)" in labels
