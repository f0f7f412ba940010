"""Python entry points mirroring the CLI, for notebooks and tests."""

from __future__ import annotations

from pathlib import Path

import optuna

from sweeper import loop
from sweeper import study as st
from sweeper.spec import SweepSpec, load_spec


def open_study(name: str, storage: str = "sqlite:///sweeper.db") -> tuple[optuna.Study, SweepSpec]:
    """Load a stored study and its sweep definition."""
    return st.load(name, st.make_storage(storage, must_exist=True))


def run_sweep(spec: SweepSpec | str | Path, storage: str | None = None) -> optuna.Study:
    """Run (or continue) a sweep in this process until its budget is met."""
    if not isinstance(spec, SweepSpec):
        spec = load_spec(spec)
    study = st.create_or_load(spec, st.make_storage(storage or spec.storage))
    study.sampler = st.make_sampler(spec, st.worker_salt(study, 0))
    loop.work(study, spec, loop.resolve_evaluate(spec))
    return study
