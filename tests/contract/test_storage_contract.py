"""One contract for sweeper's trial bookkeeping, run against every storage it supports (Optuna's
own test-suite style): a SQLite file, a PostgreSQL database, and the gRPC proxy in front of a
SQLite file (how ``run --workers K`` shares one file).

What every storage must give: grid points queued once however often a study is opened; a queued
trial handed to exactly one claimer however many race for it; a dead worker's trial failed and
queued again exactly once however many reapers see it; progress() counting each state right.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState
from storages import dead_owner, store_url

from sweeper.worker import loop
from sweeper.config.spec import SweepSpec, spec_from_dict
from sweeper.errors import StudyError
from sweeper.search import space
from sweeper.store.keys import (
    ERROR_ATTR,
    HEARTBEAT_S,
    OWNER_ATTR,
    RETRY_OF_ATTR,
    RETRY_REASON_ATTR,
)
from sweeper.store.progress import is_finished, progress, requeued_numbers, trial_point
from sweeper.store.storage import make_storage
from sweeper.store.studies import create_or_load
from sweeper.store.trials import (
    HOST,
    claim_waiting,
    owner_record,
    queue_points,
    reap_dead_trials,
)

KINDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "grpc"]


class Store:
    """A store of one kind; ``client()`` opens another storage client on it (another worker, host)."""

    def __init__(self, kind: str, url: str) -> None:
        self.kind, self.url = kind, url
        self._clients: list[Any] = []
        self._view: Any = None

    def client(self, heartbeat: int | None = HEARTBEAT_S) -> Any:
        storage = make_storage(self.url, heartbeat=heartbeat)
        self._clients.append(storage)
        return storage

    def study(self, spec: SweepSpec, heartbeat: int | None = HEARTBEAT_S) -> optuna.Study:
        """The study through a new client."""
        return optuna.load_study(study_name=spec.name, storage=self.client(heartbeat))

    def view(self, spec: SweepSpec) -> optuna.Study:
        """The study as an onlooker sees it: one more client of its own, kept for the whole test."""
        if self._view is None:
            self._view = self.client()
        return optuna.load_study(study_name=spec.name, storage=self._view)

    def close(self) -> None:
        for c in self._clients:
            if hasattr(c, "close"):  # gRPC channels
                c.close()


@pytest.fixture(params=KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with store_url(request.param, tmp_path) as url:
        s = Store(request.param, url)
        try:
            yield s
        finally:
            s.close()


def grid_spec(n: int, name: str = "contract") -> SweepSpec:
    raw = {"name": name, "data": {"dataset": "digits"}, "model": "mlp", "method": "grid",
           "params": {"model__units": list(range(1, n + 1))}, "trial_function": "trial_functions:quick"}
    return spec_from_dict(raw, source="test")


def key(t: optuna.trial.FrozenTrial) -> str:
    return space.params_key(trial_point(t) or {})


def race(n: int, fn: Callable[[int], Any]) -> list[Any]:
    """Run fn(0..n-1) in n threads released at the same instant; their results, in order."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    return out


def evaluate(spec: SweepSpec, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """units=1 fails for its own reason, units=2 is pruned, the rest complete with a curve."""
    if params["model__units"] == 1:
        raise RuntimeError("simulated build failure")
    if params["model__units"] == 2:
        raise optuna.TrialPruned("pruned at epoch 1")
    for epoch in range(2):
        on_epoch(epoch, 0.5 + epoch / 10)
    return params["model__units"] / 100


# --------------------------------------------------------------------------- the contract
def test_create_or_load_queues_each_grid_point_once(store: Store) -> None:
    spec = grid_spec(12)
    study = create_or_load(spec, store.client())
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.WAITING] * 12
    assert sorted(key(t) for t in trials) == sorted(space.params_key(p) for p in space.grid_points(spec))

    again = create_or_load(spec, store.client())  # another run/resume, another host
    assert len(again.get_trials()) == 12
    assert queue_points(again, spec) == 0
    with pytest.raises(StudyError, match="another definition: seed"):  # not a widening: refused
        create_or_load(spec_from_dict({**spec.raw, "seed": spec.seed + 1}), store.client())
    assert len(store.view(spec).get_trials()) == 12
    grown = create_or_load(grid_spec(13), store.client())  # one more value: the study grows by one point
    assert len(grown.get_trials()) == 13


def test_claim_waiting_hands_each_trial_to_one_claimer(store: Store) -> None:
    spec = grid_spec(20)
    create_or_load(spec, store.client())
    # Four claimers: two threads on each of two clients (processes/hosts), released together.
    a, b = store.study(spec), store.study(spec)
    studies = [a, a, b, b]

    def claim_all(i: int) -> list[int]:
        got = []
        while (trial := claim_waiting(studies[i])) is not None:
            got.append(trial.number)
        return got

    claimed = race(4, claim_all)
    everything = [n for got in claimed for n in got]
    duplicates = {n: c for n, c in Counter(everything).items() if c > 1}
    assert not duplicates, f"trials handed to more than one claimer: {duplicates}"
    assert sorted(everything) == list(range(20))
    assert all(t.state == TrialState.RUNNING for t in store.view(spec).get_trials())
    assert claim_waiting(store.view(spec)) is None


def test_dead_owners_trial_is_failed_and_requeued_exactly_once(store: Store) -> None:
    spec = grid_spec(6)
    study = create_or_load(spec, store.client())
    victim = claim_waiting(study)
    owner = dead_owner()
    study._storage.set_trial_system_attr(victim._trial_id, OWNER_ATTR, owner)
    alive = claim_waiting(study)  # owned by this (live) process: must be left alone
    study._storage.set_trial_system_attr(alive._trial_id, OWNER_ATTR, owner_record())
    foreign = claim_waiting(study)  # another host's: judged by heartbeats, never by pid
    study._storage.set_trial_system_attr(foreign._trial_id, OWNER_ATTR,
                                         {"host": "other-host", "pid": owner["pid"], "started": owner["started"]})

    reapers = [store.study(spec) for _ in range(3)]
    reaped = race(3, lambda i: reap_dead_trials(reapers[i]))
    assert sum(reaped) == 1, reaped
    assert sum(reap_dead_trials(r) for r in reapers) == 0  # and never again

    trials = store.view(spec).get_trials()
    by_number = {t.number: t for t in trials}
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [victim.number]
    assert f"worker pid {owner['pid']} on {HOST} died" in failed[0].user_attrs[ERROR_ATTR]
    retries = [t for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == victim.number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING
    assert key(retries[0]) == key(by_number[victim.number])
    assert by_number[alive.number].state == by_number[foreign.number].state == TrialState.RUNNING

    # The re-queued point counts as covered: opening the study again queues nothing.
    assert queue_points(create_or_load(spec, store.client()), spec) == 0
    assert len(store.view(spec).get_trials()) == 7
    prog = progress(store.view(spec), spec)
    assert (prog.finished, prog.failed, prog.running, prog.waiting) == (0, 0, 2, 4)


def test_progress_counts_every_state(store: Store) -> None:
    spec = grid_spec(8)
    study = create_or_load(spec, store.client())
    prog = progress(study, spec)
    assert (prog.finished, prog.waiting, prog.budget, prog.best, prog.done) == (0, 8, 8, None, False)

    for _ in range(5):  # units 1..5: a failure, a pruned trial, three complete
        loop.run_one(study, claim_waiting(study), spec, evaluate)
    dead = claim_waiting(study)  # units 6: its worker dies; queued again
    study._storage.set_trial_system_attr(dead._trial_id, OWNER_ATTR, dead_owner())
    assert reap_dead_trials(study) == 1
    running = claim_waiting(study)  # units 7: running now, in this process
    study._storage.set_trial_system_attr(running._trial_id, OWNER_ATTR, owner_record())

    prog = progress(store.view(spec), spec)
    assert (prog.complete, prog.pruned, prog.failed, prog.running, prog.waiting) == (3, 1, 1, 1, 2)
    assert prog.finished == 5 and not prog.done  # fail + pruned + complete; the re-queued one is not
    assert prog.best == pytest.approx(0.05)

    loop.run_one(study, running, spec, evaluate)
    prog = loop.work(study, spec, evaluate)
    assert prog.done and prog.finished == 8
    assert (prog.complete, prog.pruned, prog.failed, prog.running, prog.waiting) == (6, 1, 1, 0, 0)
    assert prog.best == pytest.approx(0.08)
    trials = store.view(spec).get_trials()
    ended = Counter(key(t) for t in trials if is_finished(t, requeued_numbers(trials)))
    assert len(ended) == 8 and set(ended.values()) == {1}  # every point ended exactly once


def test_stale_heartbeat_of_another_host_requeues_its_trial_once(store: Store) -> None:
    if store.kind == "grpc":
        pytest.skip("Optuna's gRPC proxy carries no heartbeats; workers behind it share one host (pid check)")
    spec = grid_spec(4)
    study = create_or_load(spec, store.client(heartbeat=1))  # grace period 3 s
    trial = claim_waiting(study)
    storage = study._storage
    storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, {"host": "other-host", "pid": 1, "started": 0.0})
    storage.record_heartbeat(trial._trial_id)  # it beat once, then its host went silent

    assert reap_dead_trials(study) == 0  # a fresh heartbeat: alive, whatever its pid says here
    assert storage.get_trial(trial._trial_id).state == TrialState.RUNNING
    time.sleep(4.2)
    reapers = [store.study(spec, heartbeat=1) for _ in range(3)]
    race(3, lambda i: reap_dead_trials(reapers[i]))  # Optuna's fail_stale_trials -> requeue

    trials = store.view(spec).get_trials()
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [trial.number]
    retries = [t for t in trials if t.user_attrs.get(RETRY_OF_ATTR) == trial.number]
    assert len(retries) == 1 and retries[0].state == TrialState.WAITING
    assert retries[0].user_attrs[RETRY_REASON_ATTR] == "worker stopped sending heartbeats"

    prog = loop.work(study, spec, lambda *a: 0.5)
    assert prog.done and prog.failed == 0
    complete = Counter(key(t) for t in store.view(spec).get_trials() if t.state == TrialState.COMPLETE)
    assert len(complete) == 4 and set(complete.values()) == {1}


def test_concurrent_create_or_load_queues_each_point_once(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two `run`s or `resume`s at once: study_lock serialises creation and queueing."""
    if store.kind == "grpc":
        pytest.skip("studies behind the gRPC proxy are created by the process serving it, never by its workers")
    enqueue = optuna.Study.enqueue_trial

    def slow_enqueue(self: optuna.Study, *args: Any, **kwargs: Any) -> None:
        time.sleep(0.02)  # a store a little farther away: the racers overlap for sure
        enqueue(self, *args, **kwargs)

    monkeypatch.setattr(optuna.Study, "enqueue_trial", slow_enqueue)
    spec = grid_spec(12, name="racing")
    clients = [store.client() for _ in range(3)]
    race(3, lambda i: create_or_load(spec, clients[i]))
    assert Counter(key(t) for t in store.view(spec).get_trials()) == Counter(
        space.params_key(p) for p in space.grid_points(spec))
