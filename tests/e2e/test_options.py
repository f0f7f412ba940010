"""Every sweep-file option the README documents, driven through `sweeper run` on tiny real data
(sklearn digits; mnist5k for the conv families), checked for taking effect, not only for running.

Each check reads what the store holds after the run: the trial states, the scores and curves, and
the facts read off each trained model (``metrics.model``: its augmentation layers, optimizer class,
activations, compute dtypes, XLA and steps-per-execution settings, learning rate per epoch).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
from conftest import write_sweep
from optuna.trial import FrozenTrial, TrialState

from sweeper.cli import main
from sweeper.config import names

# The option matrix (about 4 minutes here) runs in .ci/run's slow pass; the default set keeps one
# test per behaviour in the other files.
pytestmark = pytest.mark.slow

BASE: dict[str, Any] = {
    "data": {"dataset": "digits", "limit": 240},
    "params": {"model__dropout": [0.1]},
    "training": {"epochs": 2, "batch_size": 32, "model__units": 8},
}


def sweep(tmp_path: Path, name: str, *args: str, expect: int = 0, **overrides: Any) -> list[FrozenTrial]:
    """Run a sweep file through the CLI (in this process: TensorFlow is imported once) and
    return its stored trials."""
    settings = {**BASE, **overrides}
    path = write_sweep(tmp_path / f"{name}.yaml", name=name, **settings)
    code = main(["run", str(path), "--no-report", "--quiet", *args])
    assert code == expect
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'store.db'}").get_trials()


def metrics(t: FrozenTrial) -> dict[str, Any]:
    return t.user_attrs["metrics"]


def facts(t: FrozenTrial) -> dict[str, Any]:
    return metrics(t)["model"]


def only(trials: list[FrozenTrial]) -> FrozenTrial:
    assert len(trials) == 1 and trials[0].state == TrialState.COMPLETE, [t.user_attrs for t in trials]
    return trials[0]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # reports/ and TensorBoard logs land in the test's folder


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> FrozenTrial:
    """The BASE sweep without augmentation, for curves to differ from."""
    tmp = tmp_path_factory.mktemp("baseline")
    cwd = os.getcwd()
    os.chdir(tmp)
    try:
        return only(sweep(tmp, "baseline"))
    finally:
        os.chdir(cwd)


AUGMENTATIONS = {
    "rotation": ({"rotation": 15}, ["RandomRotation"]),
    "width_shift": ({"width_shift": 0.2}, ["RandomTranslation"]),
    "height_shift": ({"height_shift": 0.2}, ["RandomTranslation"]),
    "shear": ({"shear": 0.2}, ["RandomShear"]),
    "zoom": ({"zoom": 0.3}, ["RandomZoom"]),
    "all": ({"rotation": 10, "width_shift": 0.25, "height_shift": 0.25, "shear": 0.1, "zoom": 0.4},
            ["RandomRotation", "RandomTranslation", "RandomShear", "RandomZoom"]),
}


@pytest.mark.parametrize("kind", AUGMENTATIONS)
def test_augmentation_layers_are_in_the_trained_model_and_change_training(
        tmp_path: Path, kind: str, baseline: FrozenTrial) -> None:
    section, layers = AUGMENTATIONS[kind]
    t = only(sweep(tmp_path, f"aug-{kind}", augmentation=section))
    assert facts(t)["augmentation"] == layers
    assert metrics(t)["curve"] != metrics(baseline)["curve"]
    assert t.params == baseline.params


def test_horizontal_flip_on_a_csv_dataset(tmp_path: Path, digits_csv: Path, baseline: FrozenTrial) -> None:
    data = {"dataset": "csv", "path": str(digits_csv)}
    plain = only(sweep(tmp_path, "noflip", data=data))
    flipped = only(sweep(tmp_path, "flip", data=data, augmentation={"horizontal_flip": True}))
    assert facts(flipped)["augmentation"] == ["RandomFlip"] and facts(plain)["augmentation"] == []
    assert metrics(flipped)["curve"] != metrics(plain)["curve"]


def test_early_stopping_stops_early(tmp_path: Path) -> None:
    # No epoch improves the loss by 100: the second epoch without improvement stops the fit.
    t = only(sweep(tmp_path, "es", training={**BASE["training"], "epochs": 6},
                   callbacks={"early_stopping": {"monitor": "loss", "patience": 1, "min_delta": 100}}))
    assert metrics(t)["epochs_run"] == 2 and len(metrics(t)["curve"]) == 2


def test_reduce_lr_lowers_the_learning_rate(tmp_path: Path) -> None:
    t = only(sweep(tmp_path, "rl", training={**BASE["training"], "epochs": 4, "optimizer__learning_rate": 0.01},
                   callbacks={"reduce_lr": {"monitor": "loss", "factor": 0.5, "patience": 1, "min_delta": 100,
                                            "min_lr": 1e-4}}))
    rates = facts(t)["learning_rates"]
    assert rates[0] == pytest.approx(0.01) and rates[-1] < rates[0] and rates == sorted(rates, reverse=True)


def test_keep_best_scores_the_best_epoch(tmp_path: Path) -> None:
    t = only(sweep(tmp_path, "kb", training={**BASE["training"], "epochs": 5, "optimizer__learning_rate": 0.05},
                   callbacks={"keep_best": True}))
    assert t.value == pytest.approx(max(metrics(t)["curve"]), abs=1e-6)


def test_tensorboard_writes_event_files_per_trial(tmp_path: Path) -> None:
    t = only(sweep(tmp_path, "tb", callbacks={"tensorboard": True}))
    events = list((tmp_path / "reports" / "tb" / "tensorboard" / f"trial-{t.number}").rglob("events.out.tfevents.*"))
    assert events and all(e.stat().st_size > 0 for e in events)


@pytest.mark.parametrize("validation,runs", [({"kfold": 3}, 3), ({"holdout": 0.25, "repeats": 2}, 2),
                                             ({"kfold": 2, "repeats": 2}, 4)], ids=["kfold", "repeats", "kfold-x-repeats"])
def test_validation_schemes_score_every_run(tmp_path: Path, validation: dict[str, Any], runs: int) -> None:
    t = only(sweep(tmp_path, "val", validation=validation))
    scores = metrics(t)["split_scores"]
    assert len(scores) == runs and t.value == pytest.approx(float(np.mean(scores)))
    assert metrics(t)["std_test_score"] == pytest.approx(float(np.std(scores)))
    assert len(set(scores)) > 1  # different folds / seeds, different scores


RANGES = {"optimizer__learning_rate": {"low": 0.001, "high": 0.1, "log": True}, "model__units": {"low": 4, "high": 16}}


def test_every_method_proposes_its_own_points(tmp_path: Path) -> None:
    proposed = {}
    for method in ("random", "tpe", "cmaes", "gp"):
        trials = sweep(tmp_path, f"m-{method}", method=method, trials=4, params=RANGES,
                       sampler={"n_startup_trials": 2} if method in ("tpe", "gp") else None)
        assert [t.state for t in trials] == [TrialState.COMPLETE] * 4, [t.user_attrs.get("error") for t in trials]
        for t in trials:
            assert 0.001 <= t.params["optimizer__learning_rate"] <= 0.1 and 4 <= t.params["model__units"] <= 16
        proposed[method] = [tuple(sorted(t.params.items())) for t in trials]
    # The model-based samplers start from the same seeded random points (Optuna's startup trials),
    # then propose their own: after the startup trials none of them replays the random search.
    for method in ("tpe", "cmaes", "gp"):
        assert not set(proposed[method][2:]) & set(proposed["random"]), method
    assert len({tuple(ps[2:]) for ps in proposed.values()}) == 4
    grid = sweep(tmp_path, "m-grid", method="grid", params={"model__units": [4, 8, 16]})
    assert sorted(t.params["model__units"] for t in grid) == [4, 8, 16]


@pytest.mark.parametrize("pruner", [
    {"type": "median", "n_startup_trials": 3},
    {"type": "successive_halving", "min_resource": 1, "reduction_factor": 2},
    {"type": "hyperband", "min_resource": 1, "max_resource": 2, "reduction_factor": 2},
], ids=lambda p: p["type"])
def test_pruners_prune_a_planted_bad_trial(tmp_path: Path, pruner: dict[str, Any]) -> None:
    # Three learning rates that learn, then one that cannot (queued last: a grid runs in file order).
    trials = sweep(tmp_path, "prune", pruner=pruner, training={**BASE["training"], "epochs": 4, "model__units": 16},
                   params={"optimizer__learning_rate": [0.01, 0.02, 0.03, 1e-7]})
    bad = [t for t in trials if t.params["optimizer__learning_rate"] == 1e-7]
    assert [t.state for t in bad] == [TrialState.PRUNED]
    assert trials[0].state == TrialState.COMPLETE
    assert len(bad[0].intermediate_values) < 4  # stopped before its last epoch


def test_no_pruner_runs_every_epoch(tmp_path: Path) -> None:
    trials = sweep(tmp_path, "noprune", pruner={"type": "none"},
                   params={"optimizer__learning_rate": [0.01, 1e-7]})
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert all(len(t.intermediate_values) == 2 for t in trials)


def test_every_optimizer_name_trains_with_its_class(tmp_path: Path) -> None:
    trials = sweep(tmp_path, "opt", params={"optimizer": list(names.OPTIMIZERS)},
                   training={**BASE["training"], "epochs": 1})
    assert len(trials) == len(names.OPTIMIZERS)
    for t in trials:
        assert t.state == TrialState.COMPLETE, t.user_attrs.get("error")
        assert facts(t)["optimizer"] == names.OPTIMIZERS[t.params["optimizer"]]


def test_every_activation_is_in_the_trained_model(tmp_path: Path) -> None:
    trials = sweep(tmp_path, "act", params={"model__activation": list(names.ACTIVATIONS)},
                   training={**BASE["training"], "epochs": 1})
    assert len(trials) == len(names.ACTIVATIONS)
    for t in trials:
        assert t.state == TrialState.COMPLETE, t.user_attrs.get("error")
        name = t.params["model__activation"]
        assert {name, "silu" if name == "swish" else name} & set(facts(t)["activations"])


MODELS = {
    "mlp": ({"dataset": "digits", "limit": 240}, {"model__units": 8}),
    "cnn": ({"dataset": "mnist5k", "limit": 150}, {"model__units": 16}),
    "cnn5": ({"dataset": "mnist5k", "limit": 150}, {"model__units": 16}),
    "sopcnn": ({"dataset": "mnist5k", "limit": 150}, {"model__fc_units": 32}),
    "vgg": ({"dataset": "mnist5k", "limit": 150}, {"model__fc_units": 32}),
    "cifar_cnn": ("cifar_csv", {"model__units": 16}),
}


@pytest.mark.parametrize("model", MODELS)
def test_every_model_family_trains(tmp_path: Path, model: str, cifar_like_csv: Path) -> None:
    data, fixed = MODELS[model]
    if data == "cifar_csv":
        data = {"dataset": "csv", "path": str(cifar_like_csv)}
    t = only(sweep(tmp_path, f"model-{model}", model=model, data=data, params={"model__dropout": [0.2]},
                   training={"epochs": 1, "batch_size": 32, **fixed}))
    assert metrics(t)["n_params"] > 0 and 0.0 <= t.value <= 1.0


@pytest.mark.parametrize("compute,check", [
    ({"mixed_precision": True}, lambda f: "float16" in f["compute_dtypes"]),
    ({"jit_compile": True}, lambda f: f["jit_compile"] is True),
    ({"steps_per_execution": 4}, lambda f: f["steps_per_execution"] == 4),
], ids=["mixed_precision", "jit_compile", "steps_per_execution"])
def test_compute_flags_reach_the_trained_model(tmp_path: Path, compute: dict[str, Any], check: Any) -> None:
    t = only(sweep(tmp_path, "compute", compute=compute))
    assert check(facts(t)), facts(t)


def test_reuse_models_off_builds_a_new_model_per_trial_with_the_same_results(tmp_path: Path) -> None:
    grid = {"optimizer__learning_rate": [0.01, 0.02]}
    reused = sweep(tmp_path, "reuse-on", params=grid)
    fresh = sweep(tmp_path, "reuse-off", params=grid, compute={"reuse_models": False})
    assert facts(reused[1])["reused_traced_model"] is True
    assert [facts(t)["reused_traced_model"] for t in fresh] == [False, False]
    assert [metrics(t)["curve"] for t in fresh] == [metrics(t)["curve"] for t in reused]


def test_two_workers_share_a_grid(tmp_path: Path) -> None:
    trials = sweep(tmp_path, "workers", "--workers", "2", params={"optimizer__learning_rate": [0.01, 0.02, 0.03]})
    assert sorted(t.params["optimizer__learning_rate"] for t in trials) == [0.01, 0.02, 0.03]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    owners = {t.system_attrs["sweeper:owner"]["pid"] for t in trials}
    assert os.getpid() not in owners  # worker processes trained them, not this one


def test_all_failed_sweep_exits_1(tmp_path: Path) -> None:
    trials = sweep(tmp_path, "allfail", expect=1, model="user_models:exploding", params={"model__units": [4]})
    assert [t.state for t in trials] == [TrialState.FAIL]
    assert "boom: cannot build with units=4" in trials[0].user_attrs["error"]


def test_max_failures_exits_3(tmp_path: Path) -> None:
    trials = sweep(tmp_path, "maxfail", "--max-failures", "2", expect=3, model="user_models:exploding",
                   params={"model__units": [4, 5, 6, 7]})
    assert [t.state for t in trials] == [TrialState.FAIL] * 2 + [TrialState.WAITING] * 2


def test_loss_objective_is_minimised_and_stored_as_the_value(tmp_path: Path) -> None:
    trials = sweep(tmp_path, "loss", objective={"metric": "loss"}, params={"optimizer__learning_rate": [0.01, 0.03]})
    study = optuna.load_study(study_name="loss", storage=f"sqlite:///{tmp_path / 'store.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.metric_names == ["loss"]  # optuna-dashboard labels the objective with it
    for t in trials:
        assert t.value == pytest.approx(metrics(t)["val_loss"]) and metrics(t)["curve"][-1] == t.value


def test_short_aliases_are_stored_under_routed_names(tmp_path: Path) -> None:
    t = only(sweep(tmp_path, "alias", params={"lr": [0.02]}, training={"epochs": 1, "batch_size": 32, "units": 8,
                                                                       "dropout": 0.1, "batchnorm": True}))
    assert t.params == {"optimizer__learning_rate": 0.02}


def test_timeout_ends_a_sweep_with_its_budget_unspent(tmp_path: Path) -> None:
    trials = sweep(tmp_path, "timeout", method="random", trials=500, timeout=1,
                   params={"optimizer__learning_rate": {"low": 0.001, "high": 0.1}})
    assert 1 <= len(trials) < 500 and all(t.state == TrialState.COMPLETE for t in trials)


def test_a_range_of_conv_filters_is_an_integer_range(tmp_path: Path) -> None:
    """`model__filters` (like `model__fc_units`) is a width: a range of it samples integers (it
    sampled floats, and every cnn trial failed in Keras)."""
    trials = sweep(tmp_path, "filters", method="random", trials=2, model="cnn", training={"epochs": 1, "batch_size": 32},
                   params={"model__filters": {"low": 4, "high": 8}})
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials), [t.user_attrs for t in trials]
    for t in trials:
        assert isinstance(t.params["model__filters"], int)
