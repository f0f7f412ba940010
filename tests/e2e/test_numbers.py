"""Numbers and flags in every section of a sweep file follow one rule set (sweeper/config/values.py).

Every numeric key of every section refuses .inf, .nan, -1 and 1e30 with one line on stderr that
names the key and the value, exit code 2 and nothing stored, while a sane value of the same key
validates; a boolean setting takes true/false or 1/0, the same in params and every section.
Nothing here trains or imports TensorFlow (``sweeper validate`` never does).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import TINY

from sweeper.cli import main
from sweeper.config.spec import spec_from_dict
from sweeper.errors import SpecError

BASE: dict[str, Any] = dict(TINY)  # conftest.write_sweep's tiny sweep: mlp on 400 digits, 2 epochs
SAMPLING = {"method": "tpe", "trials": 3}  # a base for sampler options and ranges
VGG = {"model": "vgg", "training": {"epochs": 2, "batch_size": 32}}  # it has fc_units, not units
AUTOKERAS = {"model": "autokeras", "params": {"model__tuner": ["greedy"]}, "training": {"epochs": 2, "batch_size": 32}}
RANGES = {**SAMPLING, "params": {"optimizer__learning_rate": {"low": 0.001, "high": 0.1},
                                 "model__units": {"low": 8, "high": 64}}}

# (key path, changes to BASE that give the key a context, a value the key accepts). A path
# element in [brackets] is a list index; "params.X" keys are given as a one-value list.
NUMERIC_KEYS: list[tuple[str, dict[str, Any], Any]] = [
    # top level
    ("trials", {}, 3),
    ("timeout", SAMPLING, 60),
    ("seed", {}, 7),
    ("max_worker_deaths", {}, 3),
    # data, validation
    ("data.limit", {}, 300),
    ("validation.holdout", {}, 0.3),
    ("validation.kfold", {"validation": {"kfold": 3}}, 4),
    ("validation.repeats", {}, 2),
    # training: fixed settings (estimator, optimizer and model keys)
    ("training.epochs", {}, 3),
    ("training.batch_size", {}, 64),
    ("training.model__units", {}, 32),
    ("training.model__l2", {}, 0.01),
    ("training.optimizer__learning_rate", {}, 0.01),
    ("training.optimizer__momentum", {}, 0.9),
    ("training.optimizer__rho", {}, 0.9),
    ("training.optimizer__beta_1", {}, 0.9),
    ("training.optimizer__beta_2", {}, 0.999),
    ("training.optimizer__epsilon", {}, 1e-7),
    ("training.optimizer__weight_decay", {}, 0.004),
    ("training.optimizer__clipnorm", {}, 1.0),
    ("training.optimizer__clipvalue", {}, 0.5),
    ("training.model__filters", {"model": "cnn"}, 16),
    ("training.model__fc_units", VGG, 64),
    ("training.model__inner_dropout", VGG, 0.25),
    ("training.model__max_trials", AUTOKERAS, 2),
    # params: searched values (lists) and ranges
    ("params.model__dropout", {}, 0.3),
    ("params.epochs", {}, 2),
    ("params.batch_size", {}, 16),
    ("params.model__units", {}, 8),
    ("params.model__l2", {}, 0.001),
    ("params.optimizer__learning_rate", {}, 0.05),
    ("params.optimizer__momentum", {}, 0.5),
    ("params.optimizer__learning_rate.low", RANGES, 0.0001),
    ("params.optimizer__learning_rate.high", RANGES, 0.2),
    ("params.optimizer__learning_rate.step", RANGES, 0.001),
    ("params.model__units.high", RANGES, 128),
    ("params.model__units.step", RANGES, 8),
    # the stop rule
    ("stop.patience", {}, 3),
    ("stop.min_delta", {"stop": {"patience": 3}}, 0.001),
    # callbacks, augmentation, compute
    ("callbacks.early_stopping.patience", {}, 2),
    ("callbacks.early_stopping.min_delta", {}, 0.001),
    ("callbacks.reduce_lr.factor", {}, 0.5),
    ("callbacks.reduce_lr.patience", {}, 1),
    ("callbacks.reduce_lr.min_delta", {}, 0.001),
    ("callbacks.reduce_lr.min_lr", {}, 1e-6),
    ("augmentation.rotation", {}, 10),
    ("augmentation.width_shift", {}, 0.1),
    ("augmentation.height_shift", {}, 0.1),
    ("augmentation.shear", {}, 0.1),
    ("augmentation.zoom", {}, 0.1),
    ("compute.steps_per_execution", {}, 4),
    ("compute.fuse", {}, 2),
    # pruners (each with its type); base epochs 2
    ("pruner.n_startup_trials", {"pruner": {"type": "median"}}, 2),
    ("pruner.n_warmup_steps", {"pruner": {"type": "median"}}, 1),
    ("pruner.interval_steps", {"pruner": {"type": "median"}}, 1),
    ("pruner.min_resource", {"pruner": {"type": "successive_halving"}}, 1),
    ("pruner.reduction_factor", {"pruner": {"type": "successive_halving"}}, 3),
    ("pruner.min_early_stopping_rate", {"pruner": {"type": "successive_halving"}}, 1),
    ("pruner.min_resource", {"pruner": {"type": "hyperband"}}, 2),
    ("pruner.max_resource", {"pruner": {"type": "hyperband"}}, 2),
    ("pruner.reduction_factor", {"pruner": {"type": "hyperband"}}, 2),
    # samplers (Optuna's options, each with a method that takes it)
    ("sampler.n_startup_trials", SAMPLING, 2),
    ("sampler.n_ei_candidates", SAMPLING, 10),
    ("sampler.prior_weight", SAMPLING, 0.5),
    ("sampler.sigma0", {**SAMPLING, "method": "cmaes"}, 0.2),
    ("sampler.popsize", {**SAMPLING, "method": "cmaes"}, 6),
    ("sampler.inc_popsize", {**SAMPLING, "method": "cmaes"}, 2),
    ("sampler.population_size", {**SAMPLING, "method": "nsga2"}, 10),
    ("sampler.mutation_prob", {**SAMPLING, "method": "nsga2"}, 0.1),
    ("sampler.crossover_prob", {**SAMPLING, "method": "nsga2"}, 0.8),
    ("sampler.swapping_prob", {**SAMPLING, "method": "nsga2"}, 0.4),
    # objectives' latency measurement and constraints
    ("latency.batch_size", {}, 100),
    ("latency.passes", {}, 3),
    ("constraints.accuracy.min", {}, 0.5),
    ("constraints.loss.max", {}, 2.0),
    ("constraints.n_params.max", {}, 200000),
    ("constraints.fit_time.max", {}, 10),
    ("constraints.latency_ms.max", {}, 2.0),
]
BAD_NUMBERS = {".inf": math.inf, ".nan": math.nan, "-1": -1, "1e30": 1e30}
SHOWN = {".inf": "inf", ".nan": "nan", "-1": "-1", "1e30": "1e+30"}  # how the line names the value

# Every boolean setting, with a context: each takes true/false or 1/0 and nothing else.
BOOLEAN_KEYS: list[tuple[str, dict[str, Any]]] = [
    ("params.model__batchnorm", {}),
    ("training.model__batchnorm", {"params": {"model__dropout": [0.0]}}),
    ("training.optimizer__nesterov", {}),
    ("training.optimizer__centered", {}),
    ("training.optimizer__amsgrad", {}),
    ("training.model__conv512", VGG),
    ("params.optimizer__learning_rate.log", RANGES),
    ("callbacks.keep_best", {}),
    ("callbacks.tensorboard", {}),
    ("callbacks.early_stopping.restore_best_weights", {}),
    ("augmentation.horizontal_flip", {"data": {"dataset": "fashion_mnist"}}),  # digits refuse a flip
    ("compute.mixed_precision", {}),
    ("compute.jit_compile", {}),
    ("compute.reuse_models", {}),
    ("sampler.multivariate", SAMPLING),
    ("sampler.constant_liar", SAMPLING),
]


def _set(raw: dict[str, Any], path: str, value: Any) -> None:
    node = raw
    parts = path.split(".")
    if parts[0] == "params" and len(parts) == 2:
        raw["params"][parts[1]] = value if isinstance(value, list) else [value]
        return
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def sweep(tmp_path: Path, changes: dict[str, Any], path: str | None = None, value: Any = None) -> Path:
    raw = copy.deepcopy({**BASE, **changes})
    raw["storage"] = f"sqlite:///{tmp_path / 'store.db'}"
    if path is not None:
        _set(raw, path, value)
    file = tmp_path / "sweep.yaml"
    file.write_text(yaml.safe_dump(raw, sort_keys=False))  # inf and nan as .inf / .nan
    return file


def cli(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(list(args))
    return code, err.getvalue()


def assert_one_line(code: int, err: str, key: str, value: str) -> str:
    lines = err.splitlines()
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"{key}" in lines[0] and f": {value}" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("path,changes,good", NUMERIC_KEYS,
                         ids=[f"{p}-{c.get('pruner', {}).get('type', c.get('method', c.get('model', '')))}"
                              for p, c, _ in NUMERIC_KEYS])
def test_every_numeric_key_refuses_inf_nan_negative_and_huge(tmp_path: Path, path: str, changes: dict[str, Any],
                                                              good: Any) -> None:
    code, err = cli("validate", str(sweep(tmp_path, changes, path, good)))
    assert code == 0, err  # the key's context is valid: what follows is refused for the value alone
    for name, bad in BAD_NUMBERS.items():
        code, err = cli("validate", str(sweep(tmp_path, changes, path, bad)))
        assert_one_line(code, err, path, SHOWN[name])
    assert not (tmp_path / "store.db").exists()


@pytest.mark.parametrize("path,value,expected", [
    ("training.epochs", 1e30, "training.epochs: 1e+30 is more than the limit of 100,000 epochs"),
    ("training.epochs", 10**40, "training.epochs: 10000000000000000000...(41 characters) is more than the limit"),
    ("callbacks.early_stopping.patience", math.inf, "callbacks.early_stopping.patience: inf is not a finite number"),
    ("seed", -1, "seed: -1 must be >= 0"),
    ("training.batch_size", "1e30", "training.batch_size: 1e+30 is more than the limit of 1,000,000"),
])
def test_the_line_says_what_is_wrong(tmp_path: Path, path: str, value: Any, expected: str) -> None:
    code, err = cli("validate", str(sweep(tmp_path, {}, path, value)))
    assert code == 2 and err.count("\n") == 1 and expected in err, err


@pytest.mark.parametrize("pruner,key", [
    ({"type": "hyperband", "min_resource": 3}, "min_resource"),
    ({"type": "hyperband", "max_resource": 5}, "max_resource"),
    ({"type": "successive_halving", "min_resource": 3}, "min_resource"),
    ({"type": "median", "n_warmup_steps": 3}, "n_warmup_steps"),
])
def test_pruner_epochs_above_the_sweeps_epochs_are_refused(tmp_path: Path, pruner: dict[str, Any], key: str) -> None:
    code, err = cli("validate", str(sweep(tmp_path, {"pruner": pruner})))  # the sweep trains 2 epochs
    line = assert_one_line(code, err, f"pruner.{key}", str(pruner[key]))
    assert "more than the sweep's 2 epochs" in line
    # A searched epochs list counts its largest value; a range its high end.
    code, err = cli("validate", str(sweep(tmp_path, {"pruner": pruner, "params": {"epochs": [2, 8]}})))
    assert code == 0, err


def test_hyperband_min_resource_above_max_resource_is_refused(tmp_path: Path) -> None:
    raw = {"pruner": {"type": "hyperband", "min_resource": 2, "max_resource": 1}}
    code, err = cli("validate", str(sweep(tmp_path, raw)))
    line = assert_one_line(code, err, "pruner.min_resource", "2")
    assert "pruner.min_resource: 2 is more than max_resource 1" in line


def test_bad_numbers_are_refused_by_run_too_and_nothing_is_stored(tmp_path: Path) -> None:
    store = tmp_path / "store.db"
    for path, changes, value in [("training.epochs", {}, 1e30),
                                 ("pruner.min_resource", {"pruner": {"type": "hyperband"}}, 1e30),
                                 ("callbacks.early_stopping.patience", {}, math.inf),
                                 ("constraints.n_params.max", {}, math.nan)]:
        code, err = cli("run", str(sweep(tmp_path, changes, path, value)), "--storage", f"sqlite:///{store}")
        assert_one_line(code, err, path, {1e30: "1e+30"}.get(value, str(value)))
    assert not store.exists()


@pytest.mark.parametrize("path,changes", BOOLEAN_KEYS, ids=[p for p, _ in BOOLEAN_KEYS])
def test_one_boolean_rule_in_every_section(tmp_path: Path, path: str, changes: dict[str, Any]) -> None:
    for value in (True, False, 1, 0):
        code, err = cli("validate", str(sweep(tmp_path, changes, path, value)))
        assert code == 0, (value, err)
    for value, shown in [(2, "2"), (-1, "-1"), (0.5, "0.5"), ("yes please", "'yes please'"), (math.nan, "nan")]:
        code, err = cli("validate", str(sweep(tmp_path, changes, path, value)))
        line = assert_one_line(code, err, path, shown)
        assert line.endswith("is not true/false (or 1/0)"), line


def test_one_and_zero_mean_true_and_false_in_params_and_callbacks() -> None:
    raw = copy.deepcopy(BASE)
    raw["params"]["model__batchnorm"] = [1, 0]
    raw["callbacks"] = {"keep_best": 1, "tensorboard": 0, "early_stopping": {"restore_best_weights": 0}}
    raw["compute"] = {"jit_compile": 1}
    spec = spec_from_dict(raw, source="x.yaml")
    assert spec.params["model__batchnorm"].values == (True, False)
    assert spec.callbacks.keep_best is True and spec.callbacks.tensorboard is False
    assert spec.callbacks.early_stopping is not None and spec.callbacks.early_stopping.restore_best_weights is False
    assert spec.compute.jit_compile is True
    raw["callbacks"] = {"keep_best": 2}
    with pytest.raises(SpecError, match=r"callbacks.keep_best: 2 is not true/false \(or 1/0\)"):
        spec_from_dict(raw, source="x.yaml")
    raw["callbacks"] = {}
    raw["params"]["model__batchnorm"] = [2]
    with pytest.raises(SpecError, match=r"params.model__batchnorm\[0\]: 2 is not true/false \(or 1/0\)"):
        spec_from_dict(raw, source="x.yaml")


def test_large_but_sane_values_still_validate(tmp_path: Path) -> None:
    changes = {
        "method": "tpe", "trials": 100_000, "timeout": 30 * 24 * 3600, "seed": 2**32 - 1,
        "training": {"epochs": 10_000, "batch_size": 4096, "model__units": 4096},
        "params": {"optimizer__learning_rate": {"low": 1e-6, "high": 10.0, "log": True},
                   "model__dropout": {"low": 0.1, "high": 0.3, "step": 0.2}},  # 0.3 - 0.1 < 0.2 in floats
        "pruner": {"type": "hyperband", "min_resource": 1, "max_resource": 10_000, "reduction_factor": 3},
        "callbacks": {"early_stopping": {"patience": 1000, "min_delta": 0.0}, "reduce_lr": True},
        "compute": {"fuse": 64, "steps_per_execution": 1000},
        "constraints": {"n_params": {"max": 5e8}, "latency_ms": {"max": 1000}},
    }
    code, err = cli("validate", str(sweep(tmp_path, changes)))
    assert code == 0, err


def test_validate_does_not_import_tensorflow(tmp_path: Path) -> None:
    file = sweep(tmp_path, {}, "training.epochs", 1e30)
    code = (f"import sys; from sweeper.cli import main; rc = main(['validate', {str(file)!r}]); "
            "print(rc, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr
