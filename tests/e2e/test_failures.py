"""One failed fit never kills the sweep: errors are stored with their reason."""

from __future__ import annotations

from pathlib import Path

import optuna
from conftest import run_cli, write_sweep


def trials_of(workdir: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{workdir / 'store.db'}").get_trials()


def test_failed_trial_is_stored_with_reason_and_sweep_continues_then_retry_failed(workdir: Path) -> None:
    sweep = write_sweep(workdir / "f.yaml", name="flaky", trial_function="trial_functions:flaky",
                        params={"model__units": [1, 2, 3]})
    proc = run_cli("run", str(sweep), "--no-report", "--quiet", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    trials = trials_of(workdir, "flaky")
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].params == {"model__units": 1}
    assert failed[0].user_attrs["error"] == "RuntimeError: simulated build failure for units=1"
    assert sum(t.state.name == "COMPLETE" for t in trials) == 2
    show = run_cli("show", "flaky", "--storage", f"sqlite:///{workdir / 'store.db'}", cwd=workdir)
    assert "simulated build failure for units=1" in show.stdout and "1 failed" in show.stdout

    import os

    env_heal = {"SWEEPER_TEST_HEAL": "1"}
    os.environ.update(env_heal)
    try:
        r = run_cli("resume", "flaky", "--retry-failed", "--storage", f"sqlite:///{workdir / 'store.db'}",
                    "--quiet", "--no-report", cwd=workdir)
    finally:
        os.environ.pop("SWEEPER_TEST_HEAL")
    assert r.returncode == 0, r.stderr
    complete = [t.params["model__units"] for t in trials_of(workdir, "flaky") if t.state.name == "COMPLETE"]
    assert sorted(complete) == [1, 2, 3]


def test_max_failures_stops_a_failing_sweep(workdir: Path) -> None:
    sweep = write_sweep(workdir / "m.yaml", name="always", trial_function="trial_functions:flaky",
                        params={"model__units": [1]}, method="random", trials=10)
    proc = run_cli("run", str(sweep), "--max-failures", "3", "--no-report", "--quiet", cwd=workdir)
    assert proc.returncode == 3 and "3 trials failed (--max-failures 3)" in proc.stderr
    assert len(trials_of(workdir, "always")) == 3


def test_out_of_memory_is_a_failed_trial(workdir: Path) -> None:
    sweep = write_sweep(workdir / "o.yaml", name="oom", trial_function="trial_functions:out_of_memory",
                        params={"model__units": [1, 2, 3]})
    assert run_cli("run", str(sweep), "--no-report", "--quiet", cwd=workdir).returncode == 0
    failed = [t for t in trials_of(workdir, "oom") if t.state.name == "FAIL"]
    assert len(failed) == 1 and failed[0].user_attrs["error"].startswith("ResourceExhaustedError: OOM when allocating")


def test_builder_error_and_nan_loss_are_failed_trials(tmp_path: Path) -> None:
    """Real Keras: a user builder that raises, and a learning rate that makes the loss NaN."""
    from sweeper.worker import loop
    from sweeper.config.spec import load_spec
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import create_or_load

    spec = load_spec(write_sweep(tmp_path / "n.yaml", name="nan", params={
        "optimizer": ["sgd"], "optimizer__learning_rate": [1e9, 0.01]}))
    study = create_or_load(spec, make_storage(spec.storage))
    loop.work(study, spec, loop.for_spec(spec))
    by_lr = {t.params["optimizer__learning_rate"]: t for t in study.get_trials()}
    assert by_lr[1e9].state.name == "FAIL"
    assert "loss became NaN at epoch 1" in by_lr[1e9].user_attrs["error"]
    assert len(by_lr[1e9].intermediate_values) <= 1  # stopped at once, not after every epoch
    assert by_lr[0.01].state.name == "COMPLETE"

    spec = load_spec(write_sweep(tmp_path / "b.yaml", name="boom", model="user_models:exploding",
                                 params={"model__units": [4]}, training={"epochs": 1}))
    study = create_or_load(spec, make_storage(spec.storage))
    loop.work(study, spec, loop.for_spec(spec))
    (t,) = study.get_trials()
    assert t.state.name == "FAIL" and t.user_attrs["error"] == "ValueError: boom: cannot build with units=4"


def test_worker_survives_a_trial_failed_by_another_worker(tmp_path: Path) -> None:
    from sweeper.worker import loop
    from sweeper.config.spec import load_spec
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import create_or_load

    spec = load_spec(write_sweep(tmp_path / "e.yaml", name="elsewhere", trial_function="trial_functions:failed_elsewhere",
                                 params={"model__units": [1, 2]}))
    study = create_or_load(spec, make_storage(spec.storage))
    prog = loop.work(study, spec, loop.for_spec(spec))  # no exception: the worker carries on
    assert prog.done
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "FAIL"]  # the other verdict stands
