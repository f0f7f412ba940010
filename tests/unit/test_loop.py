"""The worker loop with a fake evaluator, on a real SQLite store, without TensorFlow: claims and
packs, one tell per trial, a failing member, Ctrl-C, a sampler's repeats, suspects first and
alone, and a death charged only when a supervisor saw it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from sweeper.config.spec import SweepSpec, spec_from_dict
from sweeper.store import optuna_internals as oi
from sweeper.store.keys import ERROR_ATTR, OWNER_ATTR, SUSPECT_ATTR, WORKER_DEATHS_ATTR
from sweeper.store.progress import progress
from sweeper.store.storage import make_storage
from sweeper.store.studies import create_or_load
from sweeper.store.trials import HOST, claim_waiting, reap_dead_trials
from sweeper.worker import loop
from sweeper.worker.evaluators import Entry, Evaluator

TESTS = str(Path(__file__).resolve().parent.parent)


def make(tmp_path: Path, **overrides: Any) -> tuple[optuna.Study, SweepSpec, str]:
    raw: dict[str, Any] = {"name": "u", "trial_function": "trial_functions:quick", "data": {"dataset": "digits"},
                           "params": {"model__units": [1, 2, 3, 4, 5, 6]}, **overrides}
    spec = spec_from_dict(raw, source="(test)")
    url = f"sqlite:///{tmp_path / 'store.db'}"
    return create_or_load(spec, make_storage(url)), spec, url


class Fake(Evaluator):
    """Packs trials by the parity of their units, up to 3; scores units / 10."""

    def __init__(self, spec: SweepSpec, fail: int | None = None, interrupt_on_call: int | None = None) -> None:
        super().__init__(spec)
        self.calls: list[tuple[Any, list[int]]] = []
        self.fail, self.interrupt_on_call = fail, interrupt_on_call

    def pack_key(self, params: dict[str, Any], seed: int) -> Any:
        return params["model__units"] % 2

    def pack_limit(self, key: Any = None) -> int:
        return 3

    def evaluate(self, entries: list[Entry], key: Any) -> None:
        self.calls.append((key, [e.params["model__units"] for e in entries]))
        if len(self.calls) == self.interrupt_on_call:
            raise KeyboardInterrupt
        for e in entries:
            units = e.params["model__units"]
            e.outcome = RuntimeError(f"units={units} broke") if units == self.fail else units / 10


def states(study: optuna.Study) -> dict[int, TrialState]:
    return {t.params.get("model__units", -1): t.state for t in study.get_trials() if t.state != TrialState.FAIL}


def test_a_grid_trains_in_packs_and_tells_each_trial(tmp_path: Path) -> None:
    study, spec, _ = make(tmp_path)
    fake = Fake(spec)
    prog = loop.work(study, spec, fake)
    assert fake.calls == [(1, [1, 3, 5]), (0, [2, 4, 6])]
    assert (prog.complete, prog.failed, prog.finished) == (6, 0, 6)
    assert {t.params["model__units"]: t.value for t in study.get_trials()} == {u: u / 10 for u in range(1, 7)}


def test_a_failing_member_fails_alone(tmp_path: Path) -> None:
    study, spec, _ = make(tmp_path)
    prog = loop.work(study, spec, Fake(spec, fail=3))
    assert (prog.complete, prog.failed) == (5, 1)
    failed = [t for t in study.get_trials() if t.state == TrialState.FAIL]
    assert failed[0].params["model__units"] == 3 and "units=3 broke" in failed[0].user_attrs[ERROR_ATTR]


def test_ctrl_c_requeues_the_whole_batch_and_the_next_run_finishes(tmp_path: Path) -> None:
    study, spec, _ = make(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        loop.work(study, spec, Fake(spec, interrupt_on_call=2))
    prog = progress(study, spec)
    assert (prog.complete, prog.waiting, prog.running, prog.interrupted) == (3, 3, 0, 3)
    prog = loop.work(study, spec, Fake(spec))
    assert (prog.complete, prog.failed, prog.finished) == (6, 0, 6)


def test_a_samplers_repeats_take_their_twins_result(tmp_path: Path) -> None:
    study, spec, _ = make(tmp_path, method="random", trials=8, params={"model__units": [1, 2]})
    calls: list[int] = []

    def count(spec: Any, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
        calls.append(params["model__units"])
        return params["model__units"] / 10

    prog = loop.work(study, spec, count)
    assert sorted(calls) == [1, 2] and prog.finished == 8 and prog.duplicate == 6


def test_suspects_run_first_and_alone(tmp_path: Path) -> None:
    study, spec, _ = make(tmp_path)
    for t in study.get_trials(states=(TrialState.WAITING,)):
        if oi.queued_params(t) == {"model__units": 4}:
            study.enqueue_trial({"model__units": 4}, user_attrs={SUSPECT_ATTR: "its worker died"})
            oi.storage_of(study).set_trial_state_values(oi.trial_id(t), TrialState.FAIL)
    fake = Fake(spec)
    loop.work(study, spec, fake)  # no store URL: suspects run in this process, alone
    assert fake.calls[0] == (None, [4])
    assert sorted(u for _, us in fake.calls[1:] for u in us) == [1, 2, 3, 5, 6]


def test_a_dead_workers_trial_becomes_a_suspect_uncounted(tmp_path: Path) -> None:
    study, spec, _ = make(tmp_path)
    trial = claim_waiting(study)
    assert trial is not None
    trial.suggest_categorical("model__units", [1, 2, 3, 4, 5, 6])
    storage, tid = oi.storage_of(study), oi.trial_id(trial)
    dead = {"host": HOST, "pid": 2**22 + 17, "started": 0.0}
    alive_supervisor = {**dead, "supervisor": _me()}
    storage.set_trial_system_attr(tid, OWNER_ATTR, alive_supervisor)
    assert reap_dead_trials(study) == 0  # its supervisor lives: the death is the supervisor's to charge
    storage.set_trial_system_attr(tid, OWNER_ATTR, dead)
    assert reap_dead_trials(study) == 1
    rerun = [t for t in study.get_trials(states=(TrialState.WAITING,)) if t.user_attrs.get(SUSPECT_ATTR)]
    assert len(rerun) == 1 and WORKER_DEATHS_ATTR not in rerun[0].user_attrs
    assert progress(study, spec).suspects == 1


def test_a_supervisor_charges_the_trial_that_kills_its_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    study, spec, url = make(tmp_path, max_worker_deaths=2)
    monkeypatch.setenv("PYTHONPATH", TESTS)
    monkeypatch.setenv(loop.FAULT_ENV, json.dumps({"model__units": 2}))
    for t in study.get_trials(states=(TrialState.WAITING,)):
        if oi.queued_params(t) in ({"model__units": 2}, {"model__units": 5}):
            study.enqueue_trial(oi.queued_params(t), user_attrs={SUSPECT_ATTR: "its worker died"})
            oi.storage_of(study).set_trial_state_values(oi.trial_id(t), TrialState.FAIL)
    prog = loop.work(study, spec, Fake(spec), loop.LoopOptions(storage_url=url))
    assert (prog.complete, prog.failed, prog.suspects) == (5, 1, 0)
    failed = [t for t in study.get_trials() if t.state == TrialState.FAIL
              and "worker died 2 times" in t.user_attrs.get(ERROR_ATTR, "")]
    assert [t.params["model__units"] for t in failed] == [2]


def _me() -> dict[str, Any]:
    from sweeper.store.trials import owner_record

    return owner_record()
