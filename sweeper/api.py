"""Python entry points mirroring the CLI, for notebooks and tests."""

from __future__ import annotations

from pathlib import Path

import optuna

from sweeper import loop
from sweeper.config.spec import SweepSpec, load_spec
from sweeper.search.strategy import strategy_for
from sweeper.store.storage import make_storage
from sweeper.store.studies import create_or_load, load
from sweeper.store.trials import worker_salt


def open_study(name: str, storage: str = "sqlite:///sweeper.db") -> tuple[optuna.Study, SweepSpec]:
    """Load a stored study and its sweep definition."""
    return load(name, make_storage(storage, must_exist=True))


def run_sweep(spec: SweepSpec | str | Path, storage: str | None = None) -> optuna.Study:
    """Run (or continue) a sweep in this process until its budget is met."""
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    study = create_or_load(spec, make_storage(storage or spec.storage))
    study.sampler = strategy_for(spec).sampler(worker_salt(study, 0))
    loop.work(study, spec, loop.resolve_evaluate(spec))
    return study
