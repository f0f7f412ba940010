"""Sweep files: valid ones parse to routed names; each bad input gives one line naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run_cli, write_sweep

from sweeper.config.spec import load_spec, spec_from_dict
from sweeper.errors import SpecError

BASE: dict[str, Any] = {"name": "s", "data": {"dataset": "digits"}, "model": "mlp", "params": {"dropout": [0.2]}}


def with_(**changes: Any) -> dict[str, Any]:
    d = {**BASE, **changes}
    return d


def test_aliases_become_routed_names_and_numbers_are_parsed() -> None:
    spec = spec_from_dict(with_(params={"lr": ["1e-3", 0.01], "batchnorm": [1, 0], "optimizer": ["Adam", "RMSprop"]}))
    assert set(spec.params) == {"optimizer__learning_rate", "model__batchnorm", "optimizer"}
    assert spec.params["optimizer__learning_rate"].values == (0.001, 0.01)
    assert spec.params["model__batchnorm"].values == (True, False)
    assert spec.params["optimizer"].values == ("adam", "rmsprop")
    assert spec.method == "grid" and spec.grid_size == 8 and spec.budget == 8


def test_ranges_make_a_non_grid_space() -> None:
    spec = spec_from_dict(with_(method="tpe", trials=5, params={"lr": {"low": 1e-4, "high": 1e-1, "log": True},
                                                                "units": {"low": 8, "high": 64}}))
    assert spec.grid_size is None and spec.budget == 5
    assert spec.params["model__units"].is_int and spec.params["optimizer__learning_rate"].log


def test_sampler_options_reach_the_optuna_sampler() -> None:
    from sweeper.search.strategy import strategy_for

    spec = spec_from_dict(with_(method="tpe", trials=5, sampler={"n_startup_trials": 5, "multivariate": True}))
    sampler = strategy_for(spec).sampler()
    assert type(sampler).__name__ == "TPESampler"
    assert sampler._n_startup_trials == 5 and sampler._multivariate  # Optuna keeps its options private


def test_the_notebook_grid_has_96_points() -> None:
    spec = load_spec(Path(__file__).resolve().parents[2] / "sweeps" / "notebook_mlp_grid.yaml")
    assert spec.grid_size == 96 and spec.kfold == 3


BAD = [
    ("unknown top key", with_(colour="red"), "colour: unknown key"),
    ("unknown param", with_(params={"droput": [0.2]}), "params.droput: unknown parameter"),
    ("wrong type", with_(params={"dropout": ["high"]}), "params.dropout[0]: 'high' is not a number"),
    ("empty list", with_(params={"dropout": []}), "params.dropout: empty list"),
    ("lr zero", with_(params={"lr": [0.0]}), "params.lr[0]: 0.0 must be > 0"),
    ("lr negative range", with_(method="random", trials=2, params={"lr": {"low": -1, "high": 1}}), "params.lr.low: -1 must be > 0"),
    ("dropout 1.5", with_(params={"dropout": 1.5}), "params.dropout: 1.5 is not in [0, 1)"),
    ("dropout 1.0", with_(params={"dropout": [0.2, 1.0]}), "params.dropout[1]: 1.0 is not in [0, 1)"),
    ("unknown optimizer", with_(params={"optimizer": ["adamax2"]}), "params.optimizer[0]: 'adamax2' is not a known optimizer"),
    ("unknown model", with_(model="resnet999"), "model: unknown model 'resnet999'"),
    ("unknown dataset", with_(data={"dataset": "imagenet"}), "data.dataset: 'imagenet' is not a known dataset"),
    ("missing csv", with_(data={"dataset": "csv", "path": "nope.csv"}), "data.path: 'nope.csv': no such file"),
    ("batch size type", with_(training={"batch_size": 12.5}), "training.batch_size: 12.5 is not an integer"),
    ("grid with range", with_(method="grid", params={"lr": {"low": 0.1, "high": 0.2}}), "params.optimizer__learning_rate: grid search needs a list"),
    ("model param unknown to builder", with_(params={"model__filters": [8]}), "params.model__filters: unknown parameter"),
    ("sampler option unknown", with_(method="tpe", trials=3, sampler={"n_startup": 5}),
     "sampler.n_startup: not an option of TPESampler"),
    ("sampler option not a value", with_(method="tpe", trials=3, sampler={"n_startup_trials": [5]}),
     "sampler.n_startup_trials: [5] is not a single number"),
    ("sampler for a grid", with_(method="grid", sampler={"n_startup_trials": 5}), "sampler: method 'grid' uses no sampler"),
]


@pytest.mark.parametrize("raw,expected", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_names_key_and_value(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(SpecError) as err:
        spec_from_dict(raw, source="sweeps/x.yaml")
    assert str(err.value).startswith("sweeps/x.yaml: ")
    assert expected in str(err.value), str(err.value)


def test_csv_without_label_column(tmp_path: Path) -> None:
    csv = tmp_path / "train.csv"
    csv.write_text("digit,pixel0,pixel1,pixel2,pixel3\n1,0,0,0,0\n")
    with pytest.raises(SpecError, match=r"data.label_column: 'label' is not a column of"):
        spec_from_dict(with_(data={"dataset": "csv", "path": str(csv)}), source="x.yaml")


@pytest.mark.parametrize("case", ["dropout 1.5", "unknown dataset", "missing csv", "unknown top key"])
def test_cli_bad_input_is_one_line_exit_2_and_stores_nothing(workdir: Path, case: str) -> None:
    raw = dict(next(b[1] for b in BAD if b[0] == case))
    store = workdir / "store.db"
    raw["storage"] = f"sqlite:///{store}"
    sweep = workdir / "bad.yaml"
    sweep.write_text(yaml.safe_dump(raw))
    for command in (["validate", str(sweep)], ["run", str(sweep)]):
        proc = run_cli(*command, cwd=workdir)
        assert proc.returncode == 2, proc.stderr
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert str(sweep) in lines[0]
    assert not store.exists(), "a bad sweep file must not create a store"


def test_cli_bad_input_leaves_an_existing_store_unchanged(workdir: Path) -> None:
    store = workdir / "store.db"
    good = write_sweep(workdir / "good.yaml", trial_function="trial_functions:quick")
    assert run_cli("run", str(good), "--quiet", "--no-report", cwd=workdir).returncode == 0
    before = store.read_bytes()
    bad = write_sweep(workdir / "bad.yaml", params={"model__dropout": [2.0]})
    proc = run_cli("run", str(bad), cwd=workdir)
    assert proc.returncode == 2 and "params.model__dropout[0]: 2.0 is not in [0, 1)" in proc.stderr
    # Same name, a parameter dropped (not a widening): refused, nothing written.
    changed = write_sweep(workdir / "changed.yaml", trial_function="trial_functions:quick",
                          params={"model__dropout": [0.1, 0.3]})
    proc = run_cli("run", str(changed), cwd=workdir)
    assert proc.returncode == 2 and "params: removed model__batchnorm" in proc.stderr
    assert store.read_bytes() == before


def test_validate_prints_space_size(workdir: Path) -> None:
    proc = run_cli("validate", str(Path(__file__).resolve().parents[2] / "sweeps" / "quickstart.yaml"), cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    assert "4 grid points" in proc.stdout
