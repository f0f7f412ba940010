"""``sweeper copy SRC_URL DST_URL STUDY``: a study moved between SQLite and PostgreSQL keeps every
trial (all states, params, values, attributes, intermediate values) and its sweep definition, and
the destination carries on from where the source stopped, each grid point still run once."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from conftest import run_cli
from optuna.trial import TrialState
from storages import dead_owner, postgres_url  # noqa: F401 - fixture

from sweeper.worker import loop
from sweeper.config.spec import SweepSpec, spec_from_dict
from sweeper.errors import StudyError
from sweeper.store import transfer
from sweeper.store.keys import OWNER_ATTR, SPEC_ATTR
from sweeper.store.progress import is_finished, requeued_numbers
from sweeper.store.storage import make_storage
from sweeper.store.studies import create_or_load
from sweeper.store.trials import claim_waiting, retry_failed

UNITS = list(range(1, 9))


def grid_spec(name: str, units: list[int] = UNITS) -> SweepSpec:
    raw = {"name": name, "data": {"dataset": "digits"}, "model": "mlp", "method": "grid",
           "params": {"model__units": units}, "trial_function": "trial_functions:quick"}
    return spec_from_dict(raw, source="test")


def evaluate(spec: SweepSpec, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """units=1 fails, units=2 is pruned after one epoch, the rest complete with a curve that has
    a NaN epoch (stored specially by Optuna) and, for units=4, an infinite value."""
    units = params["model__units"]
    if units == 1:
        raise RuntimeError("simulated build failure")
    on_epoch(0, 0.25)
    if units == 2:
        raise optuna.TrialPruned("pruned at epoch 1")
    on_epoch(1, math.nan)
    return math.inf if units == 4 else units / 100


def every_state_study(url: str, name: str = "moved") -> optuna.Study:
    """A study as a killed local run leaves it: failed, pruned and complete trials (one failure
    queued again), one RUNNING trial whose worker died, and queued points never started."""
    spec = grid_spec(name)
    study = create_or_load(spec, make_storage(url))
    for _ in range(4):  # units 1..4
        loop.run_one(study, claim_waiting(study), spec, evaluate)
    running = claim_waiting(study)  # units 5: its worker was kill -9'd
    study._storage.set_trial_system_attr(running._trial_id, OWNER_ATTR, dead_owner())
    study._storage.record_heartbeat(running._trial_id)
    assert retry_failed(study) == 1  # units 1 queued again, with retry_of / retry_reason
    return study


def snapshot(study: optuna.Study) -> list[str]:
    """Every stored field of every trial, as text (so NaN equals NaN)."""
    return [json.dumps({
        "number": t.number, "state": t.state.name, "values": t.values, "params": t.params,
        "distributions": {k: optuna.distributions.distribution_to_json(d) for k, d in t.distributions.items()},
        "user_attrs": t.user_attrs, "system_attrs": t.system_attrs,
        "intermediate_values": sorted(t.intermediate_values.items()),
        "start": str(t.datetime_start), "complete": str(t.datetime_complete),
    }, sort_keys=True, default=str) for t in study.get_trials()]


def load(url: str, name: str = "moved") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=make_storage(url, heartbeat=None))


# --------------------------------------------------------------------------- tests
@pytest.mark.postgres
def test_copy_to_postgresql_and_back_keeps_every_trial(postgres_url: str, tmp_path: Path) -> None:
    source_url, back_url = f"sqlite:///{tmp_path / 'laptop.db'}", f"sqlite:///{tmp_path / 'back.db'}"
    source = every_state_study(source_url)
    before = snapshot(source)
    assert Counter(t.state.name for t in source.get_trials()) == {
        "WAITING": 4, "COMPLETE": 2, "FAIL": 1, "PRUNED": 1, "RUNNING": 1}

    there = run_cli("copy", source_url, postgres_url, "moved", cwd=tmp_path)
    assert there.returncode == 0, there.stderr
    assert there.stdout.startswith("copied moved (9 trial(s): 2 complete, 1 fail, 1 pruned, 1 running, 4 waiting)")
    assert "1 running trial(s) copied as running" in there.stderr
    moved = load(postgres_url)
    assert snapshot(moved) == before
    assert moved.user_attrs == source.user_attrs and moved.user_attrs[SPEC_ATTR]["name"] == "moved"
    assert moved.direction == source.direction
    assert math.isnan(moved.trials[2].intermediate_values[1]) and moved.trials[3].value == math.inf

    back = run_cli("copy", postgres_url, back_url, "moved", cwd=tmp_path)
    assert back.returncode == 0, back.stderr
    assert snapshot(optuna.load_study(study_name="moved", storage=back_url)) == before  # plain Optuna opens it

    # The destination carries on: the dead worker's trial is re-run there, queued points run,
    # nothing finished runs again; the source is left as it was.
    resumed = run_cli("resume", "moved", "--storage", postgres_url, "--no-report", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "1 dead trial(s) re-queued" in resumed.stderr
    after = load(postgres_url).get_trials()
    assert snapshot(load(postgres_url))[:4] == before[:4]  # finished trials untouched
    ended = Counter(t.params["model__units"] for t in after
                    if is_finished(t, requeued_numbers(after)))
    assert ended == Counter(UNITS)  # every point ended exactly once (units 1 re-run, it now completes)
    assert not [t for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert snapshot(load(source_url)) == before


def test_copy_refuses_or_rolls_back_leaving_no_half_copied_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    from sweeper.cli import main

    src, dst = f"sqlite:///{tmp_path / 'src.db'}", f"sqlite:///{tmp_path / 'dst.db'}"
    every_state_study(src)
    create_or_load(grid_spec("moved", [1, 2]), make_storage(dst))  # a different study, same name

    def refused(*args: str) -> str:  # the CLI's one-line error, exit code 2
        capsys.readouterr()
        assert main(["copy", *args]) == 2
        return capsys.readouterr().err

    assert "already exists in the destination; nothing copied" in refused(src, dst, "moved")
    assert len(load(dst).get_trials()) == 2
    assert "no study named 'nope'" in refused(src, dst, "nope")
    assert "no such file" in refused(f"sqlite:///{tmp_path / 'absent.db'}", dst, "moved")

    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    storage = make_storage(fresh, heartbeat=None)
    real_create = type(storage).create_new_trial
    calls = {"n": 0}

    def dies_on_the_fifth_trial(self: Any, study_id: int, template_trial: Any = None) -> int:
        calls["n"] += 1
        if calls["n"] == 5:
            raise optuna.exceptions.StorageInternalError("connection lost")
        return real_create(self, study_id, template_trial)

    monkeypatch.setattr(type(storage), "create_new_trial", dies_on_the_fifth_trial)
    with pytest.raises(StudyError, match="connection lost"):
        transfer.copy_study("moved", src, storage)
    monkeypatch.undo()
    assert optuna.get_all_study_summaries(storage) == []  # the four trials copied are gone with their study

    reads = itertools.count()  # a copy that reads back different from its source
    monkeypatch.setattr(transfer, "trial_record", lambda t: {"number": t.number, "read": next(reads)})
    with pytest.raises(StudyError, match="trial 0 differs in read"):
        transfer.copy_study("moved", src, storage)
    assert optuna.get_all_study_summaries(storage) == []


@pytest.mark.postgres
def test_running_trial_of_a_live_worker_is_rerun_in_the_copy_after_grace(postgres_url: str, tmp_path: Path) -> None:
    spec = grid_spec("live", [1, 2, 3])
    src = f"sqlite:///{tmp_path / 'src.db'}"
    study = create_or_load(spec, make_storage(src))
    busy = claim_waiting(study)  # its worker, on another host, goes on writing to the source only
    study._storage.set_trial_system_attr(busy._trial_id, OWNER_ATTR, {"host": "gpu-box", "pid": 7, "started": 0.0})

    result = transfer.copy_study("live", src, postgres_url)
    assert (result.trials, result.running) == (3, 1)
    copy = optuna.load_study(study_name="live", storage=make_storage(postgres_url, heartbeat=1))
    prog = loop.work(copy, spec, lambda *a: 0.5)  # would wait forever if nothing failed the orphan
    assert prog.done
    after = copy.get_trials()
    assert [t.number for t in after if t.state == TrialState.FAIL] == [busy.number]
    assert Counter(t.params["model__units"] for t in after if t.state == TrialState.COMPLETE) == Counter([1, 2, 3])
    assert load(src, "live").get_trials()[busy.number].state == TrialState.RUNNING  # the source is not touched
