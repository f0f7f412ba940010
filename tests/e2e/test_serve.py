"""``sweeper serve``: the studies index, reports made on request and cached, a running study's
page reloading itself when trials finish, escaping, and paths that must not escape the reports."""

from __future__ import annotations

import http.client
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Iterator

import optuna
import pytest
from conftest import cli_env
from support import synthetic
from support.browser import stop_process
from test_report_browser import INJECTION, assert_clean_render, browser  # noqa: F401 (fixture)

from sweeper.report import hiplot_page as hp
from sweeper.search import space
from sweeper.search.strategy import strategy_for

warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
optuna.logging.set_verbosity(optuna.logging.WARNING)
PARAMS = {"model__batchnorm": [True, False], "model__dropout": [0.2, 0.4]}


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("serve")
    url = f"sqlite:///{workdir / 'store.db'}"
    storage = optuna.storages.RDBStorage(url)
    synthetic.make_study(synthetic.make_spec(INJECTION, params=PARAMS), storage, 12, seed=1)
    live_spec = synthetic.make_spec("live", params=PARAMS)
    live = synthetic.make_study(live_spec, storage, 6, seed=2)
    running = live.ask()  # a worker is on this one: the study is running
    space.suggest(running, strategy_for(live_spec).distributions())
    proc = subprocess.Popen(
        [sys.executable, "-m", "sweeper", "serve", "--storage", url, "--port", "0", "--refresh", "0.5",
         "--out", str(workdir / "out")],
        cwd=workdir, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        base = line.split(" at ", 1)[1].split(" ", 1)[0].rstrip("/")
        yield {"base": base, "workdir": workdir, "live": live, "running": running}
    finally:
        stop_process(proc)


def study_url(base: str, name: str) -> str:
    return f"{base}/study/{urllib.parse.quote(name, safe='')}/"


def test_index_lists_studies_with_names_as_text(served: dict[str, Any], browser: Any) -> None:  # noqa: F811
    status, html = get(served["base"] + "/")
    assert status == 200
    assert INJECTION not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Synthetic grids repeat their 4 points: each counts once, the repeats are duplicates.
    assert "4/4 finished (4 complete, 0 pruned, 0 failed); 1 running; 2 duplicate" in html
    assert "4/4 finished (4 complete, 0 pruned, 0 failed); 8 duplicate" in html
    browser.open(served["base"] + "/")
    browser.settle(0.2)
    assert not browser.errors.all(), browser.errors
    names = browser.evaluate("Array.prototype.map.call(document.querySelectorAll('#sweeper-studies a'),"
                             " function (a) { return [a.textContent, a.href]; })")
    assert [n for n, _ in names] == [INJECTION, "live"]
    assert names[0][1] == study_url(served["base"], INJECTION)
    assert browser.events("Page.javascriptDialogOpening") == []


def test_served_report_draws_every_trial(served: dict[str, Any], browser: Any) -> None:  # noqa: F811
    url = study_url(served["base"], INJECTION)
    browser.open(url)
    assert_clean_render(browser, 12)
    assert browser.events("Page.javascriptDialogOpening") == []
    figures = browser.evaluate("Array.prototype.filter.call(document.querySelectorAll('.sw img'), function (i) {"
                               " return i.complete && i.naturalWidth > 0; }).length")
    assert figures == len(PARAMS) + 1  # effect plots and validation curves, served beside the page
    # Cached: asking again without a change in the study does not make the report again.
    from sweeper.paths import study_dir

    index = study_dir(INJECTION, served["workdir"] / "out") / "index.html"  # where `sweeper report` writes it
    before = index.stat().st_mtime_ns
    assert get(url)[0] == 200
    assert index.stat().st_mtime_ns == before


def test_running_study_page_reloads_when_trials_finish(served: dict[str, Any], browser: Any) -> None:  # noqa: F811
    from support.browser import BrowserError

    url = study_url(served["base"], "live")
    browser.open(url)
    assert_clean_render(browser, 7)  # 6 complete and the running one
    version_url = f"{served['base']}/api/version/live"
    first = get(version_url)[1]
    study, running = served["live"], served["running"]
    study.tell(running, 0.95)
    extra = study.ask()
    space.suggest(extra, strategy_for(synthetic.make_spec("live", params=PARAMS)).distributions())
    study.tell(extra, 0.91)
    assert get(version_url)[1] != first
    # The page polls every 0.5 s and reloads itself. It may first load a page made between the ask
    # and the tell (8 rows, one running, still polling) and reload once more: wait for the last
    # page, the one that no longer polls (under load a check of the 8 rows alone once caught the
    # page between those two loads).
    deadline = time.monotonic() + 120
    rows = polling = None
    while time.monotonic() < deadline:
        try:
            rows = browser.evaluate(f"({hp.COUNT_JS}).rows")
            polling = browser.evaluate("document.documentElement.innerHTML.includes('/api/version/')")
        except BrowserError:
            rows = None  # the page was being replaced
        if rows == 8 and polling is False:
            break
        browser.settle(0.2)
    assert (rows, polling) == (8, False)
    assert_clean_render(browser, 8)
    status, html = get(url)
    assert status == 200 and "/api/version/" not in html  # finished: no more polling


def test_paths_outside_the_reports_are_refused(served: dict[str, Any]) -> None:
    host = urllib.parse.urlsplit(served["base"]).netloc
    quoted = urllib.parse.quote("live", safe="")
    for path in (f"/study/{quoted}/../../../../etc/passwd", f"/study/{quoted}/%2e%2e/%2e%2e/store.db",
                 "/study/nope/", "/etc/passwd", f"/study/{quoted}/index.py"):
        conn = http.client.HTTPConnection(host, timeout=30)
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status == 404, (path, resp.status)
        assert b"root:" not in body and b"SQLite" not in body
    for path in (f"/study/{quoted}/index.html%00.png", "/study/a%00b/", "/%00"):
        conn = http.client.HTTPConnection(host, timeout=30)
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        conn.close()
        assert resp.status == 400, (path, resp.status)
    assert get(served["base"] + "/api/version/nope")[0] == 404
    assert Path(served["workdir"] / "store.db").exists()


def test_study_pages_link_back_and_best_trial_pages_are_served(served: dict[str, Any]) -> None:
    status, page = get(study_url(served["base"], "live"))
    assert status == 200 and "<a href='../../'>&larr; all studies</a>" in page
    best = served["workdir"] / "out" / "live" / "best-trial" / "index.html"  # as `report --best` leaves it
    best.parent.mkdir(parents=True, exist_ok=True)
    best.write_text("<!DOCTYPE html><html><head></head><body><h1>best trial</h1></body></html>")
    status, page = get(study_url(served["base"], "live") + "best-trial/index.html")
    assert status == 200 and "best trial" in page and "<a href='../../../'>&larr; all studies</a>" in page
