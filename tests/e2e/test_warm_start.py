"""Warm starts (``warm_start:``): a new study starts with an earlier study's (or a CSV export's)
completed trials in its space, added once and marked; a grid trains only the points they do not
cover; a sampler learns from them; a definition that is not comparable is one line naming the
key, exit 2, and no study is made. Cheap trial functions (tests/trial_functions.py), in-process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from conftest import write_sweep
from sweeper.cli import main
from sweeper.store.keys import WARM_ATTR, WARM_DONE_ATTR

EARLIER: dict[str, Any] = {
    "name": "earlier", "trial_function": "trial_functions:recorded", "method": "grid",
    "params": {"model__units": [1, 2], "model__dropout": [0.1, 0.2]},
}
WIDER = {"model__units": [1, 2, 3], "model__dropout": [0.1, 0.2, 0.3]}


@pytest.fixture
def calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the trial function appends each trained point to; the earlier study is run."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "calls.txt"
    monkeypatch.setenv("SWEEPER_TEST_CALLS", str(path))
    assert run(tmp_path, "earlier.yaml", **EARLIER) == 0
    assert len(trained(path)) == 4
    path.write_text("")
    return path


def run(tmp_path: Path, file: str, *extra: str, **sweep: Any) -> int:
    return main(["run", str(write_sweep(tmp_path / file, **sweep)), "--quiet", "--no-report", *extra])


def trained(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def study(tmp_path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'store.db'}")


def names(tmp_path: Path) -> list[str]:
    return [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'store.db'}")]


def point(params: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(sorted(params.items()))


def test_a_grid_starts_with_the_earlier_points_and_trains_only_new_ones(
        tmp_path: Path, calls: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    sweep = {**EARLIER, "name": "wider", "params": WIDER, "warm_start": {"study": "earlier"}}
    assert run(tmp_path, "wider.yaml", **sweep) == 0
    assert "warm start: 4 trials from study earlier (0 outside the space, not added)" in capsys.readouterr().err
    before = {point(t.params): (t.number, t.value) for t in study(tmp_path, "earlier").get_trials()}
    trials = study(tmp_path, "wider").get_trials()
    warm = [t for t in trials if WARM_ATTR in t.user_attrs]
    assert len(trials) == 9 and all(t.state == TrialState.COMPLETE for t in trials)
    assert {point(t.params): (t.user_attrs[WARM_ATTR]["number"], t.value) for t in warm} == before
    assert all(t.user_attrs[WARM_ATTR]["study"] == "earlier" for t in warm)
    again = [point(p) for p in trained(calls)]
    assert len(again) == 5 and not set(again) & set(before)  # only the new points trained
    assert study(tmp_path, "wider").user_attrs[WARM_DONE_ATTR]["trials"] == 4

    assert run(tmp_path, "wider.yaml", **sweep) == 0  # the same file again: nothing added, nothing trained
    assert len(study(tmp_path, "wider").get_trials()) == 9 and len(trained(calls)) == 5
    assert "warm start" not in capsys.readouterr().err

    assert main(["show", "wider", "--storage", f"sqlite:///{tmp_path / 'store.db'}"]) == 0
    shown = capsys.readouterr().out
    assert "9/9 finished (5 complete, 4 warm-started, 0 pruned, 0 failed)" in shown
    assert "warm start: 4 trials from study earlier" in shown

    from sweeper.report.collect import collect, plot_rows
    from sweeper.report.pages import summary_html
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import load

    data = collect(*load("wider", make_storage(f"sqlite:///{tmp_path / 'store.db'}")))
    marks = [r["warm_start"] for r in plot_rows(data)]
    assert sorted(m for m in marks if m) == sorted(f"study earlier #{n}" for n in range(4))
    assert "warm start" in summary_html(data) and "4 trials from study earlier" in summary_html(data)


def test_trials_outside_the_space_are_counted_not_added(tmp_path: Path, calls: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    sweep = {**EARLIER, "name": "narrow", "params": {"model__units": [2, 3], "model__dropout": [0.1, 0.2]},
             "warm_start": {"study": "earlier"}}
    assert run(tmp_path, "narrow.yaml", **sweep) == 0
    assert "warm start: 2 trials from study earlier (2 outside the space, not added)" in capsys.readouterr().err
    warm = [t for t in study(tmp_path, "narrow").get_trials() if WARM_ATTR in t.user_attrs]
    assert {t.params["model__units"] for t in warm} == {2}
    assert {p["model__units"] for p in trained(calls)} == {3}


@pytest.mark.parametrize("key, change", [
    ("validation.holdout", {"validation": {"holdout": 0.3}}),
    ("data.limit", {"data": {"dataset": "digits", "limit": 300}}),
    ("seed", {"seed": 5}),
])
def test_an_incomparable_definition_is_one_line_and_nothing_is_made(
        tmp_path: Path, calls: Path, capsys: pytest.CaptureFixture[str], key: str, change: dict[str, Any]) -> None:
    capsys.readouterr()
    sweep = {**EARLIER, "name": "other", "params": WIDER, "warm_start": {"study": "earlier"}, **change}
    assert run(tmp_path, "other.yaml", **sweep) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"warm_start.study 'earlier': {key} differs" in err
    assert "other" not in names(tmp_path) and trained(calls) == []


def test_a_missing_source_is_one_line(tmp_path: Path, calls: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    sweep = {**EARLIER, "name": "other", "warm_start": {"study": "nope"}}
    assert run(tmp_path, "other.yaml", **sweep) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "warm_start.study 'nope': no study named 'nope'" in err
    assert "other" not in names(tmp_path)


def test_a_csv_export_warm_starts_a_grid(tmp_path: Path, calls: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "earlier", "--storage", f"sqlite:///{tmp_path / 'store.db'}", "--format", "csv",
                 "-o", "earlier.csv"]) == 0
    capsys.readouterr()
    sweep = {**EARLIER, "name": "fromcsv", "params": WIDER, "warm_start": {"csv": "earlier.csv"}}
    assert run(tmp_path, "fromcsv.yaml", **sweep) == 0
    assert "warm start: 4 trials from earlier.csv (0 outside the space, not added)" in capsys.readouterr().err
    before = {point(t.params): t.value for t in study(tmp_path, "earlier").get_trials()}
    warm = [t for t in study(tmp_path, "fromcsv").get_trials() if WARM_ATTR in t.user_attrs]
    assert {point(t.params): t.value for t in warm} == before
    assert sorted(t.user_attrs[WARM_ATTR]["row"] for t in warm) == [1, 2, 3, 4]
    assert len(trained(calls)) == 5 and not {point(p) for p in trained(calls)} & set(before)

    # A file without one of the space's columns: one line naming it, nothing made.
    text = (tmp_path / "earlier.csv").read_text().replace("param_model__dropout", "param_model__l2")
    (tmp_path / "bad.csv").write_text(text)
    bad = {**sweep, "name": "badcsv", "warm_start": {"csv": "bad.csv"}}
    assert run(tmp_path, "bad.yaml", **bad) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "warm_start.csv bad.csv: has no column param_model__dropout" in err
    assert "badcsv" not in names(tmp_path)


@pytest.mark.parametrize("command", ["run", "resume"])
def test_a_warm_start_cut_short_is_mended_by_the_next_run(tmp_path: Path, calls: Path,
                                                          monkeypatch: pytest.MonkeyPatch, command: str) -> None:
    from sweeper.config.spec import load_spec
    from sweeper.store import warm
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import create_or_load

    real_add = warm.add

    def cut(study: optuna.Study, found: warm.Found) -> int:
        for t in found.trials[:2]:
            study.add_trial(t)
        raise KeyboardInterrupt  # killed after two of the four, before the study is marked

    sweep = {**EARLIER, "name": "mended", "params": WIDER, "warm_start": {"study": "earlier"}}
    path = write_sweep(tmp_path / "mended.yaml", **sweep)
    monkeypatch.setattr(warm, "add", cut)
    with pytest.raises(KeyboardInterrupt):
        create_or_load(load_spec(path), make_storage(f"sqlite:///{tmp_path / 'store.db'}"))
    assert len(study(tmp_path, "mended").get_trials()) == 2
    assert WARM_DONE_ATTR not in study(tmp_path, "mended").user_attrs
    monkeypatch.setattr(warm, "add", real_add)
    again = [str(path)] if command == "run" else ["mended", "--storage", f"sqlite:///{tmp_path / 'store.db'}"]
    assert main([command, *again, "--quiet", "--no-report"]) == 0
    trials = study(tmp_path, "mended").get_trials()
    assert sum(WARM_ATTR in t.user_attrs for t in trials) == 4 and len(trials) == 9
    assert len(trained(calls)) == 5


def first_asked(tmp_path: Path, name: str, warm_start: dict[str, Any] | None) -> list[tuple[Any, ...]]:
    sweep = {**EARLIER, "name": name, "method": "tpe", "trials": 3,
             "params": {"model__dropout": {"low": 0.0, "high": 0.5}, "model__units": {"low": 1, "high": 64}}}
    if warm_start:
        sweep["warm_start"] = warm_start
    assert run(tmp_path, f"{name}.yaml", **sweep) == 0
    return [point(t.params) for t in study(tmp_path, name).get_trials() if WARM_ATTR not in t.user_attrs]


def test_tpe_learns_from_the_warm_trials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SWEEPER_TEST_CALLS", str(tmp_path / "calls.txt"))
    ranges = {"model__dropout": {"low": 0.0, "high": 0.5}, "model__units": {"low": 1, "high": 64}}
    earlier = {**EARLIER, "method": "random", "trials": 12, "params": ranges}
    assert run(tmp_path, "earlier.yaml", **earlier) == 0
    cold = first_asked(tmp_path, "cold", None)
    warm = first_asked(tmp_path, "warm", {"study": "earlier"})
    assert len(cold) == len(warm) == 3  # the 12 warm trials do not count toward trials: 3
    assert cold != warm
    # The worker's sampler seed is salted with the trials already in the study (12 warm ones), so
    # a difference could be the salt alone: the same sampler, same salt, blind to the warm trials,
    # proposes what a cold study with that salt would, and the warm study did not.
    assert blind_first(tmp_path, "cold", 0) == cold[0]  # the control: this is what a run asks first
    assert blind_first(tmp_path, "warm", 12 * 1009) != warm[0]
    assert "3/3 finished (3 complete, 0 pruned, 0 failed); 12 warm-started (earlier trials, not counted)" in \
        _show(tmp_path, "warm")


def blind_first(tmp_path: Path, name: str, salt: int) -> tuple[Any, ...]:
    """The first point the study's own sampler (salted as its worker salts it) proposes in an
    empty study, asked in the order the loop asks its params."""
    from sweeper.config.spec import load_spec
    from sweeper.search.strategy import strategy_for

    strategy = strategy_for(load_spec(tmp_path / f"{name}.yaml"))
    blind = optuna.create_study(sampler=strategy.sampler(salt), direction="maximize")
    return point(blind.ask(strategy.distributions()).params)


def _show(tmp_path: Path, name: str) -> str:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["show", name, "--storage", f"sqlite:///{tmp_path / 'store.db'}"]) == 0
    return out.getvalue()
