"""Conditional parameters (``when:``) driven through ``sweeper run`` and the other commands on
sklearn digits: a conditional grid is the product over the parameters that exist and stores what
the same points written out as sweeps of their own store; samplers never propose an absent
parameter; absent parameters stay absent in the store, export, show, the report, refits and
packs; mlp layer counts; bad conditions are one line, exit 2."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pytest
import yaml
from conftest import run_cli, write_sweep
from optuna.trial import FrozenTrial, TrialState

from sweeper.cli import main
from sweeper.config import conditions
from sweeper.config.spec import load_spec
from sweeper.search.space import full_params, params_key, trial_seed

MOMENTUM = {"values": [0.0, 0.9], "when": {"optimizer": "sgd"}}
CONDITIONAL = {"optimizer": ["sgd", "adam"], "optimizer__learning_rate": [0.01, 0.1], "optimizer__momentum": MOMENTUM}
SGD_ONLY = {"optimizer": ["sgd"], "optimizer__learning_rate": [0.01, 0.1], "optimizer__momentum": [0.0, 0.9]}
ADAM_ONLY = {"optimizer": ["adam"], "optimizer__learning_rate": [0.01, 0.1]}


def run_sweep(tmp_path: Path, name: str, expect: int = 0, **overrides: Any) -> list[FrozenTrial]:
    path = write_sweep(tmp_path / f"{name}.yaml", name=name, **overrides)
    assert main(["run", str(path), "--no-report", "--quiet"]) == expect
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'store.db'}").get_trials()


def scores(trials: list[FrozenTrial]) -> dict[str, float]:
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(done) == len(trials), [t.user_attrs.get("error") for t in trials]
    return {params_key(t.params): t.value for t in done}


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[FrozenTrial]]:
    """The conditional grid (2 optimizers x 2 rates, momentum 0 / 0.9 for sgd only), its best
    two trials' models kept."""
    tmp = tmp_path_factory.mktemp("conditional")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp)
        return tmp, run_sweep(tmp, "cond", params=CONDITIONAL, artifacts={"keep": 2})


def test_validate_prints_the_conditional_grid_size(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "c.yaml", name="c", params=CONDITIONAL)
    proc = run_cli("validate", str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "3 parameters, 6 grid points; method grid, 6 trials" in proc.stdout


def test_conditional_grid_stores_the_points_written_out_by_hand(grid: Any, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    _, trials = grid
    assert len(trials) == 6  # 4 sgd points, 2 adam points: not 8
    for t in trials:
        has = "optimizer__momentum" in t.params
        assert has == (t.params["optimizer"] == "sgd") and has == ("optimizer__momentum" in t.distributions)
    monkeypatch.chdir(tmp_path)
    by_hand = {**scores(run_sweep(tmp_path, "sgd", params=SGD_ONLY)), **scores(run_sweep(tmp_path, "adam", params=ADAM_ONLY))}
    assert scores(trials) == by_hand  # the same points, the same seeds, the same scores


def test_absent_is_a_dash_in_show_and_an_empty_cell_in_export(grid: Any) -> None:
    tmp, trials = grid
    url = f"sqlite:///{tmp / 'store.db'}"
    proc = run_cli("export", "cond", "--storage", url, "--format", "csv", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert list(rows[0])[:5] == ["number", "state", "param_optimizer", "param_optimizer__learning_rate",
                                 "param_optimizer__momentum"]
    for r in rows:
        assert (r["param_optimizer__momentum"] == "") == (r["param_optimizer"] == "adam")
    exported = json.loads(run_cli("export", "cond", "--storage", url, "--format", "json", cwd=tmp).stdout)
    assert all(("optimizer__momentum" in r["params"]) == (r["params"]["optimizer"] == "sgd") for r in exported)
    shown = run_cli("show", "cond", "--storage", url, cwd=tmp).stdout.splitlines()
    head = next(i for i, line in enumerate(shown) if line.startswith("number"))
    table = [line.split() for line in shown[head + 1:head + 7]]
    assert {r[1]: r[3] for r in table if r[1] == "adam"} == {"adam": "-"}
    assert all(r[3] in ("0", "0.9") for r in table if r[1] == "sgd")


def test_refit_report_best_and_make_estimator_rebuild_exactly_the_trials_params(grid: Any) -> None:
    from support.pages import best_page_scores

    from sweeper.deliver import load_kept, refit_on_split
    from sweeper.train.data import load_dataset, splits
    from sweeper.train.estimator import make_estimator

    tmp, trials = grid
    spec = load_spec(tmp / "cond.yaml")
    ds = load_dataset(spec.data)
    for t in trials:  # each refit on its own split scores what it stored
        assert refit_on_split(spec, ds, t).score == t.value
        params = full_params(spec, t.params)
        est = make_estimator(spec, params, trial_seed(spec, params))
        assert ("optimizer__momentum" in est.get_params()) == (t.params["optimizer"] == "sgd")
    url = f"sqlite:///{tmp / 'store.db'}"
    assert main(["report", "cond", "--best", "--storage", url, "--out", str(tmp / "reports")]) == 0
    stored, refit = best_page_scores(tmp / "reports", "cond")
    assert stored is not None and stored == refit
    # The kept models (best --stored) score on the validation split what their trials stored.
    best = sorted(trials, key=lambda t: -t.value)[:2]
    _, va = splits(spec, ds)[0]
    for t in best:
        model = load_kept(optuna.load_study(study_name="cond", storage=url), spec, t.number, first_only=True)[1][0]
        accuracy = float(np.mean(np.argmax(model.predict(ds.x[va], verbose=0), axis=1) == ds.y[va]))
        assert accuracy == pytest.approx(t.value, abs=1e-6)
        assert ("momentum" in model.optimizer.get_config()) == (t.params["optimizer"] == "sgd")
        if "optimizer__momentum" in t.params:
            assert model.optimizer.get_config()["momentum"] == pytest.approx(t.params["optimizer__momentum"])
    assert main(["best", "cond", "--storage", url, "--out", str(tmp / "out"), "--stored"]) == 0
    assert main(["best", "cond", "--storage", url, "--out", str(tmp / "out")]) == 0


def test_fused_packs_mix_trials_with_and_without_momentum(grid: Any, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    _, alone = grid
    monkeypatch.chdir(tmp_path)
    fused = run_sweep(tmp_path, "cond", params=CONDITIONAL, compute={"fuse": 8})
    packs = {t.number: t.user_attrs["metrics"]["model"]["fused"]["pack_trials"] for t in fused}
    assert set(packs.values()) == {6}, packs  # sgd with momentum and adam without, one pack
    got, want = scores(fused), scores(alone)
    assert set(got) == set(want) and all(abs(got[k] - want[k]) < 1e-6 for k in got)


TPE_PARAMS = {
    "optimizer": ["sgd", "rmsprop", "adam"],
    "optimizer__learning_rate": {"low": 1e-4, "high": 0.1, "log": True},
    "optimizer__momentum": {"values": [0.0, 0.5, 0.9], "when": {"optimizer": ["sgd", "rmsprop"]}},
    "optimizer__nesterov": {"values": [True, False], "when": {"optimizer": "sgd", "optimizer__momentum": [0.5, 0.9]}},
    "model__layers": {"low": 1, "high": 3},
    "model__units_3": {"low": 16, "high": 256, "log": True, "when": {"model__layers": 3}},
    "model__dropout": {"low": 0.0, "high": 0.5, "when": {"model__layers": [2, 3]}},
}


def test_tpe_never_asks_for_a_parameter_whose_condition_fails(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "tpe.yaml", name="tpe", method="tpe", trials=200, params=TPE_PARAMS,
                       trial_function="trial_functions:exact_params")
    proc = run_cli("run", str(path), "--no-report", "--quiet", cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    spec = load_spec(path)
    assert spec.sampler == {"multivariate": True, "group": True}  # TPE's settings for conditional spaces
    trials = optuna.load_study(study_name="tpe", storage=f"sqlite:///{tmp_path / 'store.db'}").get_trials()
    assert len(trials) == 200 and all(t.state == TrialState.COMPLETE for t in trials), \
        [t.user_attrs.get("error") for t in trials if t.state != TrialState.COMPLETE][:3]
    for t in trials:
        assert set(t.params) == set(conditions.active(spec.params, t.params)), t.params
    # Every conditional branch was sampled (TPE learns from each), and every parameter stayed absent somewhere.
    seen = {k for t in trials for k in t.params}
    assert seen == set(TPE_PARAMS)
    assert all(sum(k in t.params for t in trials) < 200 for k in TPE_PARAMS if "when" in TPE_PARAMS[k])
    overridden = write_sweep(tmp_path / "o.yaml", name="o", method="tpe", trials=5, params=TPE_PARAMS,
                             sampler={"multivariate": False})
    assert load_spec(overridden).sampler == {"multivariate": False, "group": False}


def test_mlp_sweep_over_layer_counts_trains_that_many_hidden_layers(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from sweeper.api import load

    monkeypatch.chdir(tmp_path)
    params = {"model__layers": [1, 2, 3],
              "model__units_2": {"values": [8], "when": {"model__layers": [3]}},
              "model__units_3": {"values": [8, 24], "when": {"model__layers": [3]}}}
    trials = run_sweep(tmp_path, "layers", params=params, artifacts={"keep": "all"}, compute={"fuse": 4})
    assert len(trials) == 4 and all(t.state == TrialState.COMPLETE for t in trials)
    sweep = load("layers", storage=f"sqlite:///{tmp_path / 'store.db'}")
    expected = {1: [16], 2: [16, 32], 3: [16, 8]}  # units 16: the family's widths 16, 32, 64 unless set
    for t in trials:
        model = sweep.model(t.number)
        widths = [layer.units for layer in model.layers if type(layer).__name__ == "Dense"][:-1]
        layers = t.params["model__layers"]
        assert widths == expected[layers] + ([t.params["model__units_3"]] if layers == 3 else [])
        assert "fused" not in t.user_attrs["metrics"]["model"]  # another layer sequence trains alone


def test_a_user_builder_receives_exactly_the_params_that_exist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    params = {"model__layers": [1, 2], "model__width_2": {"values": [4, 6], "when": {"model__layers": 2}}}
    trials = run_sweep(tmp_path, "user", model="user_models:layered", params=params, training={"epochs": 1})
    assert sorted(len(t.params) for t in trials) == [1, 2, 2]
    assert all(t.state == TrialState.COMPLETE for t in trials), [t.user_attrs.get("error") for t in trials]


def test_cnn_takes_a_layer_count_and_filters_per_layer() -> None:
    from sweeper.train.models.cnn import build_cnn

    model = build_cnn({"X_shape_": (None, 16, 16, 1), "n_classes_": 10}, layers=3, filters=4, filters_2=5)
    assert [layer.filters for layer in model.layers if type(layer).__name__ == "Conv2D"] == [4, 5, 16]
    with pytest.raises(Exception, match="filters_3 is set but the model has 2 layer"):
        build_cnn({"X_shape_": (None, 16, 16, 1), "n_classes_": 10}, filters_3=8)
    with pytest.raises(Exception, match="at least 16x16"):
        build_cnn({"X_shape_": (None, 8, 8, 1), "n_classes_": 10}, layers=4)


BAD = {
    "unknown parent": ({"optimizer": ["sgd", "adam"], "momentum": {"values": [0.0, 0.9], "when": {"nesterov": True}}},
                       "params.momentum.when.nesterov: unknown parameter"),
    "a value the parent cannot take": ({"optimizer": ["sgd", "adam"], "momentum": {"values": [0.0, 0.9],
                                        "when": {"optimizer": "rmsprop"}}},
                                       "params.momentum.when.optimizer: 'rmsprop' is not a value optimizer can take"),
    "a cycle": ({"optimizer": {"values": ["sgd", "adam"], "when": {"momentum": 0.9}},
                 "momentum": {"values": [0.0, 0.9], "when": {"optimizer": "sgd"}}},
                "params.optimizer.when: a cycle of conditions: optimizer -> optimizer__momentum -> optimizer"),
    "no point satisfies it": ({"optimizer": ["sgd", "adam"], "momentum": MOMENTUM,
                               "optimizer__nesterov": {"values": [True, False],
                                                       "when": {"momentum": 0.9, "optimizer": "adam"}}},
                              "params.optimizer__nesterov.when: no point satisfies it"),
    "a width past some trials' layers": ({"model__layers": [1, 2, 3], "model__units_3": [8, 16]},
                                         "params.model__units_3: trials with model__layers 1 would get it"),
    "a float range as parent": ({"lr": {"low": 0.001, "high": 0.1}, "momentum": {"values": [0.0, 0.9], "when": {"lr": 0.01}}},
                                "params.momentum.when.lr: optimizer__learning_rate is a float range"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_conditions_are_one_line_exit_2_and_store_nothing(case: str, tmp_path: Path) -> None:
    params, message = BAD[case]
    method = {"method": "tpe", "trials": 3} if case == "a float range as parent" else {}
    path = write_sweep(tmp_path / "bad.yaml", name="bad", params=params, **method)
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("sweeper: error:"), proc.stderr
    assert not (tmp_path / "store.db").exists()


def test_a_changed_condition_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "g.yaml", name="g", params=CONDITIONAL, trial_function="trial_functions:exact_params")
    assert run_cli("run", str(path), "--no-report", "--quiet", cwd=tmp_path).returncode == 0
    url = f"sqlite:///{tmp_path / 'store.db'}"
    before = len(optuna.load_study(study_name="g", storage=url).get_trials())
    raw = yaml.safe_load(path.read_text())
    raw["params"]["optimizer__momentum"]["when"] = {"optimizer": ["sgd", "adam"]}
    path.write_text(yaml.safe_dump(raw))
    proc = run_cli("run", str(path), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "params.optimizer__momentum.when: the condition changed" in lines[0], proc.stderr
    assert len(optuna.load_study(study_name="g", storage=url).get_trials()) == before == 6


def test_warm_start_from_a_conditional_export_reads_empty_cells_as_absent(tmp_path: Path) -> None:
    path = write_sweep(tmp_path / "w.yaml", name="w", params=CONDITIONAL, trial_function="trial_functions:exact_params")
    assert run_cli("run", str(path), "--no-report", "--quiet", cwd=tmp_path).returncode == 0
    url = f"sqlite:///{tmp_path / 'store.db'}"
    export = run_cli("export", "w", "--storage", url, "--format", "csv", "--output", str(tmp_path / "w.csv"), cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    again = write_sweep(tmp_path / "w2.yaml", name="w2", params=CONDITIONAL, trial_function="trial_functions:exact_params",
                        warm_start={"csv": str(tmp_path / "w.csv")})
    proc = run_cli("run", str(again), "--no-report", "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    trials = optuna.load_study(study_name="w2", storage=url).get_trials()
    assert len(trials) == 6 and all("warm_start" in t.user_attrs for t in trials)  # all 6 points, none trained again
    assert {params_key(t.params) for t in trials} == {params_key(p) for p in conditions.grid_points(load_spec(path).params)}
