"""Heartbeats of the trials a worker runs (RDB storages), so other hosts can tell a dead worker
from a slow one. Optuna does this inside ``optimize``; sweeper claims trials itself, one at a
time or a pack at a time."""

from __future__ import annotations

import threading

import optuna

from sweeper.store import optuna_internals as oi


class Heartbeat:
    """Beats for ``trial_ids`` from a daemon thread while the ``with`` block runs."""

    def __init__(self, study: optuna.Study, *trial_ids: int) -> None:
        self._storage = oi.heartbeat_storage(oi.storage_of(study))
        self._trial_ids = trial_ids
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        for tid in self._trial_ids:
            self._storage.record_heartbeat(tid)  # type: ignore[union-attr]

    def __enter__(self) -> "Heartbeat":
        if self._storage is not None:
            interval = self._storage.get_heartbeat_interval()
            self._beat()

            def beat() -> None:
                while not self._stop.wait(interval):
                    try:
                        self._beat()
                    except Exception:
                        pass  # a missed beat is retried; a dead DB shows up in the main thread

            self._thread = threading.Thread(target=beat, daemon=True, name="sweeper-heartbeat")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
