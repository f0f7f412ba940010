"""One vocabulary and one count of trial outcomes on every surface: `sweeper run`'s last line,
`show`, `ls`, the report's summary and `serve`'s index say the same thing, and the counts add
up: finished = complete (+ duplicate for a sampler) + pruned + failed = the budget, and every
trial row is in exactly one count. Studies are made the way a user makes them (`sweeper run`,
Ctrl-C, `sweeper resume`) with the cheap trial functions of tests/trial_functions.py."""

from __future__ import annotations

import html
import re
import signal
import threading
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import optuna
import pytest
from conftest import PATIENCE_S, run_cli, start_run, write_sweep
from test_resume import owned_running, states, wait_for

from sweeper.cli import main

COUNTS = re.compile(r"(\d+)/(\d+) finished \((\d+) complete(?:, (\d+) duplicate)?, (\d+) pruned, (\d+) failed\)"
                    r"(?:; (?:(?!  )[^<\n])*)?")  # up to the end of the text (ls: its next column)


def store_url(workdir: Path) -> str:
    return f"sqlite:///{workdir / 'store.db'}"


def cli(capsys: pytest.CaptureFixture, *args: str, code: int = 0) -> str:
    assert main(list(args)) == code
    return capsys.readouterr().out


def surfaces(workdir: Path, name: str, capsys: pytest.CaptureFixture, serve_index: str) -> dict[str, str]:
    """The counts text of one study as show, ls, the report and serve's index print it."""
    url = store_url(workdir)
    show = cli(capsys, "show", name, "--storage", url).splitlines()[0]
    (ls_row,) = [line for line in cli(capsys, "ls", "--storage", url).splitlines() if line.startswith(name + " ")]
    page = Path(cli(capsys, "report", name, "--storage", url, "--out", str(workdir / "reports")).strip())
    summary = re.search(r"<tr><th>trials</th><td>(.*?)</td>", page.read_text()).group(1)
    (serve_row,) = [r for r in serve_index.split("<tr>") if f">{name}</a>" in r]
    found = {}
    for surface, text in (("show", show), ("ls", ls_row), ("report", html.unescape(summary)),
                          ("serve", html.unescape(serve_row))):
        m = COUNTS.search(text)
        assert m, (surface, text)
        found[surface] = m.group(0).strip()
    return found


def same_everywhere(found: dict[str, str]) -> str:
    texts = set(found.values())
    assert len(texts) == 1, found
    return texts.pop()


def adds_up(text: str, trials: list[Any], sampler: bool) -> dict[str, int]:
    m = COUNTS.match(text)
    finished, budget, complete, dup, pruned, failed = (int(g or 0) for g in m.groups())
    counted = complete + pruned + failed + (dup if sampler else 0)
    assert finished == counted == budget, text  # what the user asked for, all of it
    extra = {w: int(n) for n, w in re.findall(r"(\d+) (running|queued|interrupted|duplicate) \(?", text.split(")", 1)[1])}
    rows = complete + dup + pruned + failed + extra.get("running", 0) + extra.get("queued", 0) + extra.get("interrupted", 0)
    if not sampler:
        rows += extra.get("duplicate", 0)
    assert rows == len(trials), (text, len(trials))  # every trial row counted once
    return {"finished": finished, "complete": complete, "duplicate": dup, "pruned": pruned, "failed": failed,
            **{k: v for k, v in extra.items() if k != "duplicate"}}


@pytest.fixture
def serve(workdir: Path) -> Iterator[Any]:
    """`sweeper serve`'s server on the test's store, in a thread; returns a function fetching its index."""
    from sweeper.cli.server import ReportServer, make_server

    servers = []

    def index() -> str:
        if not servers:
            server = make_server(ReportServer(store_url(workdir), workdir / "served"), port=0)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
        with urllib.request.urlopen(f"http://127.0.0.1:{servers[0].server_address[1]}/", timeout=30) as resp:
            return resp.read().decode()

    yield index
    for s in servers:
        s.shutdown()
        s.server_close()


def trials_of(workdir: Path, name: str) -> list[Any]:
    return optuna.load_study(study_name=name, storage=store_url(workdir)).get_trials()


def test_ctrl_c_and_resume_count_the_interrupted_trial_once(workdir: Path, capsys: pytest.CaptureFixture,
                                                           serve: Any) -> None:
    sweep = write_sweep(workdir / "ctrlc.yaml", name="ctrlc", trial_function="trial_functions:slow",
                        params={"model__units": [1, 2, 3]})
    proc = start_run(sweep, workdir, 60)
    # A trial that sleeps a minute: the Ctrl-C lands in it however late this loop sees it running
    # (with 2 s trials a loaded CI machine once saw the last one late and signalled a finished run).
    wait_for(lambda: owned_running(workdir, "ctrlc") == 1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=PATIENCE_S)
    assert proc.returncode == 130, (out, err, states(workdir, "ctrlc"))
    resumed = run_cli("resume", "ctrlc", "--storage", store_url(workdir), "--quiet", "--no-report", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
    assert "3/3 finished (3 complete, 0 pruned, 0 failed); 1 interrupted and re-run (not counted)" in resumed.stdout

    trials = trials_of(workdir, "ctrlc")
    text = same_everywhere(surfaces(workdir, "ctrlc", capsys, serve()))
    assert adds_up(text, trials, sampler=False) == {"finished": 3, "complete": 3, "duplicate": 0, "pruned": 0,
                                                    "failed": 0, "interrupted": 1}
    (stopped,) = [t for t in trials if t.state.name == "FAIL"]
    (rerun,) = [t for t in trials if t.user_attrs.get("retry_of") == stopped.number]
    show = cli(capsys, "show", "ctrlc", "--storage", store_url(workdir))
    assert f"trial {stopped.number}: interrupted (Ctrl-C); queued again; re-run as trial {rerun.number}" in show
    report = (workdir / "reports" / "ctrlc" / "index.html").read_text()
    assert "Interrupted and re-run (1)" in report and f"(re-run as trial {rerun.number})" in report


def test_failed_duplicate_and_pruned_trials_count_alike_everywhere(workdir: Path, capsys: pytest.CaptureFixture,
                                                                   serve: Any) -> None:
    runs = {
        # Every trial fails (a sampler asks the one point again and again: each a failure of its own).
        "allfail": dict(method="random", trials=3, trial_function="trial_functions:flaky", params={"model__units": [1]}),
        # Random search on 3 points asked 8 times: 5 duplicates take their twin's result and count.
        "dups": dict(method="random", trials=8, trial_function="trial_functions:quick", params={"model__units": [1, 2, 3]}),
        # units=2 learns nothing: pruned at its first epoch.
        "pruned": dict(trial_function="trial_functions:curve", params={"model__units": [1, 2, 3]},
                       pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0}),
    }
    for name, fields in runs.items():
        res = run_cli("run", str(write_sweep(workdir / f"{name}.yaml", name=name, **fields)), "--quiet", "--no-report",
                      cwd=workdir)
        assert res.returncode == (1 if name == "allfail" else 0), res.stderr
    index = serve()
    counts = {}
    for name in runs:
        text = same_everywhere(surfaces(workdir, name, capsys, index))
        counts[name] = adds_up(text, trials_of(workdir, name), sampler=name != "pruned")
    assert counts["allfail"] == {"finished": 3, "complete": 0, "duplicate": 0, "pruned": 0, "failed": 3}
    assert counts["pruned"] == {"finished": 3, "complete": 2, "duplicate": 0, "pruned": 1, "failed": 0}
    dups = [t for t in trials_of(workdir, "dups") if "duplicate_of" in t.user_attrs]
    assert counts["dups"] == {"finished": 8, "complete": 8 - len(dups), "duplicate": len(dups), "pruned": 0, "failed": 0}
    assert len(dups) >= 5  # only 3 points exist

    show = cli(capsys, "show", "allfail", "--storage", store_url(workdir))
    assert "failed (3):" in show and show.count("RuntimeError: simulated build failure for units=1") == 3
    show = cli(capsys, "show", "dups", "--storage", store_url(workdir))
    assert f"trial {dups[0].number}: duplicate of trial {dups[0].user_attrs['duplicate_of']}" in show
    listed = [line.split()[0] for line in show.split("\n\n")[0].splitlines()[2:]]
    assert len(listed) == 3  # the top trials list each configuration once, not its duplicates
    report = (workdir / "reports" / "dups" / "index.html").read_text()
    assert "Duplicates (" in report and "fANOVA <span class='muted'>(3 trials)</span>" in report  # no point counted twice
