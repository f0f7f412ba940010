"""Fused packs in sweeps (``compute: {fuse: K}``), driven through ``sweeper run`` on sklearn digits:
a pack's trials are scored as the same trials trained one at a time, each keeps its own callbacks,
pruning and epochs, k-fold fits and several structures pack, samplers ask K at a time, and a
Ctrl-C or SIGKILL in the middle of a pack loses nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from conftest import PATIENCE_S, cli_env, run_cli, write_sweep
from optuna.trial import FrozenTrial, TrialState

from sweeper.cli import main

BASE: dict[str, Any] = {
    "data": {"dataset": "digits"},
    "model": "mlp",
    "training": {"epochs": 4, "batch_size": 64, "model__units": 16},
}


def sweep(tmp_path: Path, name: str, fuse: Any, expect: int = 0, **overrides: Any) -> list[FrozenTrial]:
    """Run the sweep file through the CLI with ``compute.fuse`` and return its stored trials."""
    settings = {**BASE, **overrides}
    settings["compute"] = {**settings.get("compute", {}), "fuse": fuse}
    path = write_sweep(tmp_path / f"{name}.yaml", name=name, **settings)
    assert main(["run", str(path), "--no-report", "--quiet"]) == expect
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'store.db'}").get_trials()


def by_point(trials: list[FrozenTrial]) -> dict[str, FrozenTrial]:
    out = {json.dumps(t.params, sort_keys=True): t for t in trials if t.state == TrialState.COMPLETE}
    assert len(out) == sum(t.state == TrialState.COMPLETE for t in trials)  # every point once
    return out


def packed(t: FrozenTrial) -> dict[str, Any]:
    return t.user_attrs["metrics"]["model"].get("fused", {})


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _compare(fused: dict[str, FrozenTrial], alone: dict[str, FrozenTrial]) -> None:
    """Each trial scores as its unfused run, dropout or not: the same validation accuracy at every
    epoch (the same images right; 1e-6 covers float32 against float64 division) and the same
    val_loss up to the order its batches are averaged in."""
    assert set(fused) == set(alone)
    for k in sorted(fused):
        got, want = fused[k].user_attrs["metrics"], alone[k].user_attrs["metrics"]
        assert abs(fused[k].value - alone[k].value) < 1e-6, k
        assert np.abs(np.subtract(got["curve"], want["curve"])).max() < 1e-6, k
        assert abs(got["val_loss"] - want["val_loss"]) < 1e-5, k


def test_fused_trials_score_as_they_do_alone(tmp_path: Path) -> None:
    grid = {"optimizer": ["adam", "rmsprop"], "optimizer__learning_rate": [0.001, 0.004],
            "model__dropout": [0.0, 0.3]}
    fused = by_point(sweep(tmp_path, "fused", 8, params=grid))
    alone = by_point(sweep(tmp_path, "alone", "off", params=grid))
    assert len(fused) == 8 and {packed(t)["pack_trials"] for t in fused.values()} == {8}
    assert all(not packed(t) for t in alone.values())
    _compare(fused, alone)


@pytest.mark.slow  # the default set keeps one test per behaviour; .ci/run runs these too
def test_cnn_trials_fuse_and_score_as_alone(tmp_path: Path) -> None:
    """The cnn family packs too (convolutions per member); its trials score as alone."""
    settings = {"model": "cnn", "params": {"optimizer": ["rmsprop", "sgd"], "model__batchnorm": [False, True]},
                "training": {"epochs": 2, "batch_size": 64, "model__filters": 4, "model__units": 16}}
    fused = by_point(sweep(tmp_path, "cnn-fused", 4, **settings))
    alone = by_point(sweep(tmp_path, "cnn-alone", "off", **settings))
    assert len(fused) == 4 and sorted(packed(t)["pack_trials"] for t in fused.values()) == [2, 2, 2, 2]
    _compare(fused, alone)


@pytest.mark.slow
def test_fused_grid_scores_as_unfused_with_dropout(tmp_path: Path) -> None:
    """The notebook-A grid's 16-point subset (benchmarks/vs_gridsearch.py 'small': optimizer x
    learning rate x batch norm x dropout 0.2/0.4, batch 1024, 15 epochs) on mnist5k, two packs:
    every trial scores what it scores unfused, so the ranking and the best configuration are the
    same. (Before members ran their Keras layers' own ops, float rounding of the batched ones
    moved these 15-epoch scores by 0.6 points on average and up to 6.2: rmsprop at 0.01 without
    batch norm turns any rounding change into points; Keras's XLA compile moves them by 1.2.)"""
    grid = {"optimizer": ["rmsprop", "adam"], "optimizer__learning_rate": [0.001, 0.01],
            "model__batchnorm": [True, False], "model__dropout": [0.2, 0.4]}
    settings = {"data": {"dataset": "mnist5k"}, "training": {"epochs": 15, "batch_size": 1024}}
    fused = by_point(sweep(tmp_path, "fused16", 16, params=grid, **settings))
    alone = by_point(sweep(tmp_path, "alone16", "off", params=grid, **settings))
    assert len(fused) == 16 and {packed(t)["pack_trials"] for t in fused.values()} == {8}  # BN on / off
    for k in sorted(fused, key=lambda k: -alone[k].value):
        print(f"  {k}: fused {fused[k].value:.4f} alone {alone[k].value:.4f}")
    _compare(fused, alone)
    best = max(fused, key=lambda k: fused[k].value)
    assert best == max(alone, key=lambda k: alone[k].value)


@pytest.mark.slow  # the default set keeps one test per behaviour; .ci/run runs these too
def test_members_stop_early_and_run_their_own_epochs(tmp_path: Path) -> None:
    """Early stopping (patience 1, best weights restored) and a per-trial epoch count act per
    member: each trial runs the epochs and scores the epoch its unfused run does."""
    settings = {
        "params": {"optimizer__learning_rate": [0.003, 0.3], "optimizer": ["adam", "sgd"], "epochs": [2, 7]},
        "callbacks": {"early_stopping": {"monitor": "val_loss", "patience": 1, "restore_best_weights": True}},
    }
    fused = by_point(sweep(tmp_path, "es-fused", 8, **settings))
    alone = by_point(sweep(tmp_path, "es-alone", "off", **settings))
    assert set(fused) == set(alone) and len(fused) == 8
    runs = []
    for k, t in fused.items():
        got, want = t.user_attrs["metrics"], alone[k].user_attrs["metrics"]
        assert got["epochs_run"] == want["epochs_run"], k
        assert abs(got["val_loss"] - want["val_loss"]) < 1e-5, k
        assert abs(t.value - alone[k].value) < 1e-6, k
        runs.append((json.loads(k)["epochs"], got["epochs_run"]))
    assert any(run < epochs for epochs, run in runs)  # stopped early, frozen while the pack went on
    assert any(run == epochs == 7 for epochs, run in runs)
    assert all(run <= epochs for epochs, run in runs)


def test_cnn_members_stop_early_while_their_pack_goes_on(tmp_path: Path) -> None:
    """A cnn member that stopped early has no rows in the pack's later steps: every trial of such a
    pack used to fail ("input depth must be evenly divisible by filter depth", TensorFlow's CPU
    convolution on an empty batch); each now scores and stops as its unfused run."""
    settings = {"model": "cnn", "data": {"dataset": "digits", "limit": 240},
                "params": {"model__dropout": [0.0, 0.2], "optimizer__learning_rate": [0.05, 0.01, 0.001]},
                "training": {"epochs": 5, "batch_size": 32},
                "callbacks": {"early_stopping": {"monitor": "val_loss", "patience": 0, "min_delta": 0.05}}}
    fused = by_point(sweep(tmp_path, "cnn-es-fused", 8, **settings))
    alone = by_point(sweep(tmp_path, "cnn-es-alone", "off", **settings))
    assert len(fused) == 6 and {packed(t)["pack_trials"] for t in fused.values()} == {6}
    runs = {k: t.user_attrs["metrics"]["epochs_run"] for k, t in fused.items()}
    assert runs == {k: t.user_attrs["metrics"]["epochs_run"] for k, t in alone.items()}
    assert min(runs.values()) < 5 == max(runs.values())  # one stopped while the others trained on
    _compare(fused, alone)


def test_trials_that_differ_only_in_epochs_train_once(tmp_path: Path) -> None:
    """A searched ``epochs``: the 2-epoch and 4-epoch trials of one configuration share a seed, so a
    pack trains the 4-epoch fit once and the 2-epoch trial ends halfway with its own curve and score,
    the scores of its run alone (fuse off); a refit of the short trial gives its stored score back."""
    from sweeper.deliver import refit_on_split
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import load
    from sweeper.train.data import load_dataset

    settings = {"params": {"epochs": [2, 4], "optimizer__learning_rate": [0.003, 0.01]},
                "training": {**BASE["training"], "model__dropout": 0.2}}
    fused = by_point(sweep(tmp_path, "ep-fused", 4, **settings))
    alone = by_point(sweep(tmp_path, "ep-alone", "off", **settings))
    assert set(fused) == set(alone) and len(fused) == 4
    for t in fused.values():  # 4 trials, 2 fits trained: one per learning rate
        assert packed(t) == {"pack_trials": 4, "pack_fits": 2, "batch_size": 64}
        assert t.user_attrs["metrics"]["epochs_run"] == t.params["epochs"]
    short = {t.params["optimizer__learning_rate"]: t for t in fused.values() if t.params["epochs"] == 2}
    for t in fused.values():
        if t.params["epochs"] == 4:
            twin = short[t.params["optimizer__learning_rate"]]
            assert twin.user_attrs["metrics"]["curve"] == t.user_attrs["metrics"]["curve"][:2]
            assert twin.value != t.value  # scored at its own last epoch
    _compare(fused, alone)
    study, spec = load("ep-fused", make_storage(f"sqlite:///{tmp_path / 'store.db'}"))
    for t in short.values():
        again = refit_on_split(spec, load_dataset(spec.data), study.get_trials()[t.number])
        assert again.score == again.stored_score == t.value


def test_keep_best_scores_each_members_best_epoch(tmp_path: Path) -> None:
    settings = {"params": {"optimizer__learning_rate": [0.05, 0.2]}, "callbacks": {"keep_best": True},
                "training": {**BASE["training"], "epochs": 5, "optimizer": "sgd"}}
    fused = by_point(sweep(tmp_path, "kb-fused", 2, **settings))
    alone = by_point(sweep(tmp_path, "kb-alone", "off", **settings))
    for k, t in fused.items():
        assert abs(t.value - alone[k].value) < 1e-6
        assert t.value == pytest.approx(max(t.user_attrs["metrics"]["curve"]), abs=1e-6)


def test_a_pruned_member_is_frozen_while_its_pack_goes_on(tmp_path: Path) -> None:
    """Two good points and two that learn nothing share the second pack; the median pruner (the
    first pack's 4 trials completed) prunes the bad two after their first epoch, the good two run on."""
    # adam: after one epoch the first pack's median is about 0.43, the good two score about 0.7
    # and the bad two under 0.1 (measured), far from any seed's noise.
    lrs = [0.002, 0.001, 0.0015, 0.003, 0.01, 0.02, 1e-6, 2e-6]
    trials = sweep(tmp_path, "pruned", 4, params={"optimizer__learning_rate": lrs},
                   training={**BASE["training"], "epochs": 5, "optimizer": "adam"},
                   pruner={"type": "median", "n_startup_trials": 2, "n_warmup_steps": 0})
    state = {t.params["optimizer__learning_rate"]: t for t in trials}
    assert {lr for lr, t in state.items() if t.state == TrialState.PRUNED} == {1e-6, 2e-6}
    for lr in (1e-6, 2e-6):
        assert max(state[lr].intermediate_values) < 4  # stopped reporting before its last epoch
    for lr in (0.01, 0.02):  # its pack-mates trained every epoch
        assert state[lr].state == TrialState.COMPLETE and state[lr].user_attrs["metrics"]["epochs_run"] == 5


@pytest.mark.slow  # the default set keeps one test per behaviour; .ci/run runs these too
def test_k_fold_fits_and_several_structures_pack(tmp_path: Path) -> None:
    """3 folds x 4 configurations of 2 structures (units 8 and 16): 2 packs of 2 trials, 6 fits each;
    every fold's score is the unfused run's."""
    settings = {"params": {"model__units": [8, 16], "optimizer__learning_rate": [0.003, 0.01]},
                "validation": {"kfold": 3}, "training": {"epochs": 3, "batch_size": 64}}
    fused = by_point(sweep(tmp_path, "kf-fused", 4, **settings))
    alone = by_point(sweep(tmp_path, "kf-alone", "off", **settings))
    assert len(fused) == 4
    for k, t in fused.items():
        assert packed(t) == {"pack_trials": 2, "pack_fits": 6, "batch_size": 64}
        np.testing.assert_allclose(t.user_attrs["metrics"]["split_scores"],
                                   alone[k].user_attrs["metrics"]["split_scores"], atol=1e-6)  # the same images
        assert abs(t.user_attrs["metrics"]["val_loss"] - alone[k].user_attrs["metrics"]["val_loss"]) < 1e-5
    assert {t.params["model__units"]: t.user_attrs["metrics"]["n_params"] for t in fused.values()} == \
        {t.params["model__units"]: t.user_attrs["metrics"]["n_params"] for t in alone.values()}


def test_many_structures_pack_without_tensorflow_warnings(tmp_path: Path) -> None:
    """Six structures make six packs, each traced once on purpose: the run's output carries no
    TensorFlow advice about retracing, and every point completes once."""
    path = write_sweep(tmp_path / "six.yaml", name="six", **{**BASE, "training": {"epochs": 2, "batch_size": 64}},
                       params={"model__units": [4, 8, 12, 16, 20, 24], "optimizer__learning_rate": [0.01, 0.02]},
                       compute={"fuse": 4})
    out = run_cli("run", str(path), "--no-report", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "retracing" not in out.stderr + out.stdout and "WARNING:tensorflow" not in out.stderr
    trials = optuna.load_study(study_name="six", storage=f"sqlite:///{tmp_path / 'store.db'}").get_trials()
    assert len(by_point(trials)) == 12 and all(packed(t)["pack_trials"] == 2 for t in trials)


def test_fuse_auto_sizes_packs_by_structure_batch_and_folds(tmp_path: Path) -> None:
    """``fuse: auto``: a pack holds as many trials as the sizing rule allows fits for this structure
    and batch size, divided by the trial's folds."""
    from sweeper.train.fused.sizing import pack_size
    from sweeper.train.fused.structure import MLPStructure

    trials = sweep(tmp_path, "auto", "auto", params={"optimizer__learning_rate": [0.001, 0.002, 0.003, 0.005, 0.01, 0.02]},
                   validation={"kfold": 2}, training={"epochs": 2, "batch_size": 2048, "model__units": 16})
    k = pack_size(MLPStructure(units=16), 2048, (8, 8, 1), 10) // 2
    assert 1 <= k < 6  # the rule limits these packs (rows per step and core on a CPU)
    sizes = sorted(packed(t)["pack_trials"] for t in trials)
    expected = sorted([k] * (6 // k) * k + [6 % k] * (6 % k))
    assert sizes == expected and all(packed(t)["pack_fits"] == 2 * packed(t)["pack_trials"] for t in trials)


def test_a_sampler_asks_k_trials_within_the_budget(tmp_path: Path) -> None:
    trials = sweep(tmp_path, "random", 4, method="random", trials=6,
                   params={"optimizer__learning_rate": {"low": 0.001, "high": 0.03, "log": True}})
    assert len(trials) == 6 and all(t.state == TrialState.COMPLETE for t in trials)
    assert sorted(packed(t)["pack_trials"] for t in trials) == [2, 2, 4, 4, 4, 4]


def test_a_sampler_asks_trials_that_share_the_first_ones_pack(tmp_path: Path) -> None:
    """Trials asked together share the pack key of the first (batch size, batch-norm) and fill one
    pack, so the sampler sees a pack's results before it proposes the next; the rest it picks."""
    trials = sweep(tmp_path, "mates", 3, method="random", trials=9, seed=1,
                   params={"batch_size": [32, 64], "model__batchnorm": [True, False],
                           "optimizer__learning_rate": [0.001, 0.003, 0.01, 0.03]})
    assert len(trials) == 9 and all(t.state == TrialState.COMPLETE for t in trials)
    trials.sort(key=lambda t: t.number)
    packs = [trials[i:i + 3] for i in range(0, 9, 3)]  # asked together: consecutive numbers
    for pack in packs:
        assert len({(t.params["batch_size"], t.params["model__batchnorm"]) for t in pack}) == 1
        assert all(packed(t)["pack_trials"] == 3 for t in pack)
    assert len({(p[0].params["batch_size"], p[0].params["model__batchnorm"]) for p in packs}) > 1  # the first of each: sampled
    assert len({t.params["optimizer__learning_rate"] for t in trials}) > 1


def test_several_objectives_with_latency_in_a_pack(tmp_path: Path) -> None:
    trials = sweep(tmp_path, "mo", 2, params={"model__units": [8], "optimizer__learning_rate": [0.003, 0.01]},
                   objective=[{"metric": "accuracy"}, {"metric": "latency_ms"}])
    assert len(trials) == 2
    for t in trials:
        assert t.state == TrialState.COMPLETE and packed(t)["pack_trials"] == 2
        assert t.values[1] > 0 and t.user_attrs["metrics"]["latency_ms"] == pytest.approx(t.values[1])


def test_what_cannot_be_fused_says_why_once_and_trains_alone(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "aug.yaml", name="aug", **BASE, params={"optimizer__learning_rate": [0.01, 0.003]},
                       augmentation={"rotation": 10}, compute={"fuse": 8})
    out = run_cli("run", str(path), "--no-report", "--quiet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("compute.fuse: trials train one at a time (augmentation layers are not fused)") == 1
    trials = optuna.load_study(study_name="aug", storage=f"sqlite:///{tmp_path / 'store.db'}").get_trials()
    assert all(t.state == TrialState.COMPLETE and not packed(t) for t in trials)
    bad = write_sweep(tmp_path / "bad.yaml", name="bad", **BASE, params={"model__units": [8]}, compute={"fuse": 65})
    out = run_cli("validate", str(bad), cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0
    assert "compute.fuse: 65 is not off, auto or a pack size from 1 to 64" in out.stderr


def _wait_running(db: Path, n: int, proc: subprocess.Popen[bytes], timeout: float = PATIENCE_S) -> None:
    """Until ``n`` trials are RUNNING, read through a read-only SQLite connection (an Optuna load
    would give a half-created store its own schema, racing the run that creates it)."""
    import sqlite3

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as con:
                if con.execute("SELECT count(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0] >= n:
                    return
        except sqlite3.Error:
            pass  # not created yet
        time.sleep(0.2)
    raise AssertionError(f"no pack of {n} started")


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGKILL, marks=pytest.mark.slow)])
def test_a_stopped_pack_loses_nothing(tmp_path: Path, sig: signal.Signals) -> None:
    """Ctrl-C (every member re-queued at once) or SIGKILL (members reaped on resume) in the middle of
    a pack of 4: resume completes every grid point exactly once."""
    path = write_sweep(tmp_path / "kill.yaml", name="kill", **{**BASE, "training": {**BASE["training"], "epochs": 40}},
                       params={"optimizer__learning_rate": [0.001, 0.002, 0.003, 0.005, 0.01, 0.02]},
                       compute={"fuse": 4})
    proc = subprocess.Popen([sys.executable, "-m", "sweeper", "run", str(path), "--no-report", "--quiet"],
                            cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_running(tmp_path / "store.db", 4, proc)
        time.sleep(0.5)  # inside the pack's training
        os.kill(proc.pid, sig)
        proc.communicate(timeout=PATIENCE_S)
    finally:
        proc.kill()
    study = optuna.load_study(study_name="kill", storage=f"sqlite:///{tmp_path / 'store.db'}")
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        waiting = [t for t in study.get_trials() if t.state == TrialState.WAITING]
        assert len(waiting) == 6  # the pack's 4 re-queued, 2 never claimed
    out = run_cli("resume", "kill", "--storage", f"sqlite:///{tmp_path / 'store.db'}", "--no-report", "--quiet",
                  cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    trials = study.get_trials()
    done = by_point(trials)
    assert len(done) == 6
    assert not any(t.state in (TrialState.RUNNING, TrialState.WAITING) for t in trials)


def test_a_fused_trials_refits_agree_with_it(tmp_path: Path) -> None:
    """With dropout and keep_best, the best-trial page's refit of a fused trial (a pack of one)
    scores what the trial stored, and ``best`` saves a model of the trial's structure."""
    import html

    from support.pages import best_page_scores

    settings = {"params": {"optimizer__learning_rate": [0.003, 0.01], "model__dropout": [0.3]},
                "callbacks": {"keep_best": True}}
    trials = sweep(tmp_path, "refit", 2, **settings)
    assert all(packed(t)["pack_trials"] == 2 for t in trials)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    assert main(["report", "refit", "--best", "--storage", url, "--out", str(tmp_path / "reports")]) == 0
    stored, refit = best_page_scores(tmp_path / "reports", "refit")
    assert stored is not None and stored == refit
    summary = html.unescape((tmp_path / "reports" / "refit" / "index.html").read_text())
    assert "compute.fuse 2: 2 of 2 trained trials in packs of 2 trials (2 fits as one model)" in summary
    assert " wall-clock, " in summary and " summed over trials (trials that ran at once each count)" in summary
    assert main(["best", "refit", "--storage", url, "--out", str(tmp_path / "out")]) == 0
    import keras

    saved = list((tmp_path / "out").rglob("*.keras"))
    assert len(saved) == 1
    model = keras.models.load_model(saved[0], compile=False)
    assert model.count_params() == trials[0].user_attrs["metrics"]["n_params"]
