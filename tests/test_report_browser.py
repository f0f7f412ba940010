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

from sweeper.report import hiplot_page as hp
from sweeper.report import write_report
from sweeper.testing import synthetic

INJECTION = "<script>alert(1)</script>"


def _browser_missing() -> str | None:
    from sweeper.testing.browser import find_chromium

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
    from sweeper.testing.browser import Browser

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
    from sweeper.testing.browser import is_blank

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
