"""Sweep file (YAML) -> validated, typed ``SweepSpec``. Every error names the file and key path.

Parameter keys are scikeras routed names (``optimizer__learning_rate``, ``model__dropout``,
``batch_size`` ...), so a stored trial's params rebuild its estimator with ``set_params``.
Short aliases (``lr``, ``dropout``, ``batchnorm`` ...) are accepted and normalised.
Nothing here imports TensorFlow: ``sweeper validate`` answers at once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from sweeper import names
from sweeper.errors import SpecError, SweeperError
from sweeper.training import (
    Augmentation,
    Callbacks,
    Compute,
    Pruner,
    parse_augmentation,
    parse_callbacks,
    parse_compute,
    parse_pruner,
)

DATASETS = ("digits", "mnist5k", "csv", "mnist", "fashion_mnist", "cifar10")
METHODS = ("grid", "random", "tpe", "cmaes", "gp")
METRICS = {"accuracy": "maximize", "loss": "minimize"}
DEFAULT_STORAGE = "sqlite:///sweeper.db"

TOP_KEYS = {
    "name", "description", "data", "model", "params", "method", "trials", "timeout",
    "objective", "validation", "training", "seed", "storage", "trial_function",
    "callbacks", "augmentation", "pruner", "compute", "sampler",
}
DATA_KEYS = {"dataset", "path", "label_column", "test_path", "id_column", "limit"}
VALIDATION_KEYS = {"holdout", "kfold", "repeats"}
OBJECTIVE_KEYS = {"metric", "direction"}
TRAINING_DEFAULTS: dict[str, Any] = {"epochs": 10, "batch_size": 128}


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    path: str | None = None
    label_column: str = "label"
    test_path: str | None = None
    id_column: str = "id"
    limit: int | None = None


@dataclass(frozen=True)
class ParamSpec:
    """One searched parameter: a list of values, or a range (``low``/``high``/``log``/``step``)."""

    name: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    is_int: bool = False

    @property
    def is_grid(self) -> bool:
        return self.values is not None


@dataclass
class SweepSpec:
    name: str
    data: DataSpec
    model: str
    params: dict[str, ParamSpec]
    fixed: dict[str, Any]
    method: str = "tpe"
    trials: int | None = None
    timeout: float | None = None
    metric: str = "accuracy"
    direction: str = "maximize"
    holdout: float | None = 0.2
    kfold: int | None = None
    repeats: int = 1  # each split trained with this many seeds; mean and std over all runs
    seed: int = 0
    storage: str = DEFAULT_STORAGE
    callbacks: Callbacks = field(default_factory=Callbacks)
    augmentation: Augmentation = field(default_factory=Augmentation)
    pruner: Pruner = field(default_factory=Pruner)
    sampler: dict[str, Any] = field(default_factory=dict)  # options of the method's Optuna sampler
    compute: Compute = field(default_factory=Compute)
    description: str = ""
    trial_function: str | None = None  # advanced: module:function replacing the Keras trial
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def grid_size(self) -> int | None:
        """Number of grid points, or None when some parameter is a continuous range."""
        if not all(p.is_grid for p in self.params.values()):
            return None
        return math.prod(len(p.values or ()) for p in self.params.values())

    @property
    def budget(self) -> int | None:
        """Trials to finish: the grid size (capped by ``trials``) or ``trials``."""
        if self.method == "grid":
            size = self.grid_size or 0
            return min(size, self.trials) if self.trials else size
        return self.trials


# --------------------------------------------------------------------------- values
def parse_sampler(source: str, method: str, raw: Any) -> dict[str, Any]:
    """``sampler:`` options, passed to the method's Optuna sampler as keyword arguments (e.g.
    ``n_startup_trials: 5`` for tpe). Checked by building the sampler once here."""
    if raw is None:
        return {}
    options = _mapping(source, "sampler", raw)
    if method not in names.SAMPLERS:
        raise _err(source, "sampler", f"method {method!r} uses no sampler (its points are queued)")
    import inspect

    import optuna

    cls = getattr(optuna.samplers, names.SAMPLERS[method])
    known = [k for k in inspect.signature(cls).parameters if k != "seed"]
    for key, value in options.items():
        if key == "seed":
            raise _err(source, "sampler.seed", "sweeper seeds the sampler from the sweep's 'seed'")
        if key not in known:
            raise _err(source, f"sampler.{key}", f"not an option of {cls.__name__} (options: {', '.join(known)})")
        if not isinstance(value, (bool, int, float, str)):
            raise _err(source, f"sampler.{key}", f"{value!r} is not a single number, flag or name")
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # experimental-option warnings belong to the run
            cls(**options)
    except (TypeError, ValueError) as exc:
        raise _err(source, "sampler", f"{cls.__name__} refuses these options ({str(exc).splitlines()[0]})") from None
    return dict(options)


def _err(source: str, path: str, msg: str) -> SpecError:
    return SpecError(source, path, msg)


def _as_number(value: Any) -> Any:
    # PyYAML reads "1e-3" as a string (YAML 1.1); accept it as the float people meant.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _check_float(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], Any]:
    def check(v: Any) -> float:
        v = _as_number(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise ValueError(f"{v!r} is not a number")
        bad = (lo is not None and (v < lo or (lo_open and v == lo))) or (
            hi is not None and (v > hi or (hi_open and v == hi))
        )
        if bad:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            if lo is not None and hi is None:
                raise ValueError(f"{v!r} must be {'>' if lo_open else '>='} {lo:g}")
            raise ValueError(f"{v!r} is not in {left}{lo:g}, {hi:g}{right}")
        return float(v)

    return check


def _check_int(lo: int) -> Callable[[Any], Any]:
    def check(v: Any) -> int:
        v = _as_number(v)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v:
            raise ValueError(f"{v!r} is not an integer")
        if v < lo:
            raise ValueError(f"{int(v)!r} must be >= {lo}")
        return int(v)

    return check


def _check_choice(choices: tuple[str, ...] | dict[str, str], what: str) -> Callable[[Any], Any]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or v.lower() not in choices:
            raise ValueError(f"{v!r} is not a known {what} (known: {', '.join(choices)})")
        return v.lower()

    return check


def _check_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    raise ValueError(f"{v!r} is not true/false")


def _check_scalar(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return _as_number(v) if isinstance(v, str) else v
    raise ValueError(f"{v!r} is not a scalar (number, string or bool)")


RULES: dict[str, Callable[[Any], Any]] = {
    "optimizer": _check_choice(names.OPTIMIZERS, "optimizer"),
    "optimizer__learning_rate": _check_float(0.0, None, lo_open=True),
    "optimizer__momentum": _check_float(0.0, 1.0, hi_open=True),
    "optimizer__nesterov": _check_bool,
    "optimizer__centered": _check_bool,
    "batch_size": _check_int(1),
    "epochs": _check_int(1),
    "model__dropout": _check_float(0.0, 1.0, hi_open=True),
    "model__batchnorm": _check_bool,
    "model__activation": _check_choice(names.ACTIVATIONS, "activation"),
    "model__units": _check_int(1),
    "model__kernel_initializer": _check_choice(names.INITIALIZERS, "kernel initializer"),
    "model__l2": _check_float(0.0, None),
}
INT_PARAMS = {k for k, rule in RULES.items() if getattr(rule, "__qualname__", "").startswith("_check_int")}


def canonical_key(key: str) -> str:
    return names.ALIASES.get(key, key)


def _check_key(source: str, path: str, key: str, builder_keys: set[str]) -> str:
    canon = canonical_key(key)
    if canon in names.ESTIMATOR_KEYS or canon in RULES:
        if canon.startswith("model__") and canon[7:] not in builder_keys:
            raise _err(source, path, f"the model takes no parameter {canon[7:]!r} (it takes: {', '.join(sorted(builder_keys))})")
        return canon
    if canon.startswith("optimizer__") and canon[11:] in names.OPTIMIZER_KWARGS:
        return canon
    if canon.startswith("model__") and canon[7:] in builder_keys:
        return canon
    known = sorted(set(names.ESTIMATOR_KEYS) | set(names.ALIASES) | {f"model__{k}" for k in builder_keys})
    raise _err(source, path, f"unknown parameter (known: {', '.join(known)})")


def _checked(source: str, path: str, rule: Callable[[Any], Any], v: Any) -> Any:
    try:
        return rule(v)
    except ValueError as exc:
        raise _err(source, path, str(exc)) from None


POSITIVE_INT = _check_int(1)
POSITIVE = _check_float(0.0, None, lo_open=True)
FRACTION = _check_float(0.0, 1.0, hi_open=True)


def _value(source: str, path: str, key: str, v: Any) -> Any:
    return _checked(source, path, RULES.get(key, _check_scalar), v)


def _param(source: str, path: str, key: str, raw: Any) -> ParamSpec:
    if isinstance(raw, list):
        if not raw:
            raise _err(source, path, "empty list: give at least one value")
        values = tuple(_value(source, f"{path}[{i}]", key, v) for i, v in enumerate(raw))
        if len(set(map(repr, values))) != len(values):
            raise _err(source, path, f"{raw!r} has duplicate values")
        return ParamSpec(key, values=values)
    if isinstance(raw, dict):
        if "choices" in raw:
            if set(raw) != {"choices"}:
                raise _err(source, path, "a 'choices' parameter takes no other keys")
            return _param(source, f"{path}.choices", key, raw["choices"])
        extra = set(raw) - {"low", "high", "log", "step", "type"}
        if extra:
            raise _err(source, f"{path}.{sorted(extra)[0]}", "unknown key (a range takes low, high, log, step, type)")
        for bound in ("low", "high"):
            if bound not in raw:
                raise _err(source, path, f"a range needs '{bound}' (or give a list of values)")
        low = _value(source, f"{path}.low", key, raw["low"])
        high = _value(source, f"{path}.high", key, raw["high"])
        if not all(isinstance(b, (int, float)) and not isinstance(b, bool) for b in (low, high)):
            raise _err(source, path, "a range needs numeric low/high; use a list for categories")
        if low > high:
            raise _err(source, f"{path}.low", f"{low!r} is greater than high {high!r}")
        log = raw.get("log", False)
        if not isinstance(log, bool):
            raise _err(source, f"{path}.log", f"{log!r} is not true/false")
        if log and low <= 0:
            raise _err(source, f"{path}.low", f"{low!r} must be > 0 on a log scale")
        kind = raw.get("type", "int" if key in INT_PARAMS else "float")
        if kind not in ("int", "float"):
            raise _err(source, f"{path}.type", f"{kind!r} is not int or float")
        step = raw.get("step")
        if step is not None:
            step = _as_number(step)
            if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
                raise _err(source, f"{path}.step", f"{step!r} must be a positive number")
            if log:
                raise _err(source, f"{path}.step", "step cannot be combined with log")
        is_int = kind == "int"
        if is_int:
            low, high = int(low), int(high)
        return ParamSpec(key, low=low, high=high, log=log, step=step, is_int=is_int)
    return ParamSpec(key, values=(_value(source, path, key, raw),))


def _mapping(source: str, path: str, raw: Any, allowed: set[str] | None = None) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _err(source, path, f"{raw!r} is not a mapping")
    if allowed is not None:
        for k in raw:
            if k not in allowed:
                raise _err(source, f"{path}.{k}" if path else str(k), f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return raw


def _data(source: str, raw: Any) -> DataSpec:
    if isinstance(raw, str):
        raw = {"dataset": raw}
    raw = _mapping(source, "data", raw, DATA_KEYS)
    dataset = raw.get("dataset")
    if not isinstance(dataset, str) or dataset.lower() not in DATASETS:
        raise _err(source, "data.dataset", f"{dataset!r} is not a known dataset (known: {', '.join(DATASETS)})")
    dataset = dataset.lower()
    limit = raw.get("limit")
    if limit is not None:
        limit = _checked(source, "data.limit", POSITIVE_INT, limit)
    label = raw.get("label_column", "label")
    id_column = raw.get("id_column", "id")
    for key, v in (("label_column", label), ("id_column", id_column)):
        if not isinstance(v, str) or not v:
            raise _err(source, f"data.{key}", f"{v!r} is not a column name")
    path = test_path = None
    if dataset == "csv":
        path = raw.get("path")
        if not isinstance(path, str):
            raise _err(source, "data.path", "the csv dataset needs a path to a train CSV")
        path = _existing_csv(source, "data.path", path)
        columns = _csv_columns(source, "data.path", path)
        if label not in columns:
            raise _err(source, "data.label_column", f"{label!r} is not a column of {path}")
        if raw.get("test_path") is not None:
            test_path = _existing_csv(source, "data.test_path", str(raw["test_path"]))
    elif raw.get("path") is not None or raw.get("test_path") is not None:
        raise _err(source, "data.path", f"only the csv dataset takes a path (dataset is {dataset!r})")
    return DataSpec(dataset, path, label, test_path, id_column, limit)


def _existing_csv(source: str, path: str, value: str) -> str:
    p = Path(value).expanduser()
    if not p.is_absolute() and source and not p.exists():
        p = Path(source).parent / p  # relative to the sweep file as a fallback
    if not p.is_file():
        raise _err(source, path, f"{value!r}: no such file")
    return str(p.resolve())


def _csv_columns(source: str, path: str, file: str) -> list[str]:
    with open(file, encoding="utf-8", errors="replace") as fh:
        header = fh.readline().strip()
    if not header:
        raise _err(source, path, f"{file!r} is empty")
    return [c.strip().strip('"') for c in header.split(",")]


def spec_from_dict(raw: Any, source: str = "") -> SweepSpec:
    """Validate a parsed sweep definition; raises ``SpecError`` naming the key path."""
    raw = _mapping(source, "", raw, TOP_KEYS)
    if not raw:
        raise _err(source, "", "empty sweep file")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise _err(source, "name", f"{name!r} is not a study name")
    if "data" not in raw:
        raise _err(source, "data", "missing: which dataset to use (e.g. 'data: {dataset: mnist5k}')")
    data = _data(source, raw["data"])

    from sweeper.models import builder_params, resolve_builder

    model = raw.get("model", "mlp")
    if not isinstance(model, str):
        raise _err(source, "model", f"{model!r} is not a model name")
    try:
        builder_keys = set(builder_params(resolve_builder(model)))
    except SweeperError as exc:
        raise _err(source, "model", str(exc)) from None

    params_raw = _mapping(source, "params", raw.get("params"))
    params: dict[str, ParamSpec] = {}
    for key, value in params_raw.items():
        canon = _check_key(source, f"params.{key}", str(key), builder_keys)
        if canon in params:
            raise _err(source, f"params.{key}", f"{canon!r} is given twice")
        params[canon] = _param(source, f"params.{key}", canon, value)

    fixed: dict[str, Any] = dict(TRAINING_DEFAULTS)
    for key, value in _mapping(source, "training", raw.get("training")).items():
        canon = _check_key(source, f"training.{key}", str(key), builder_keys)
        if isinstance(value, (list, dict)):
            raise _err(source, f"training.{key}", "fixed settings take one value; search it under 'params'")
        fixed[canon] = _value(source, f"training.{key}", canon, value)

    method = raw.get("method", "grid" if all(p.is_grid for p in params.values()) else "tpe")
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise _err(source, "method", f"{method!r} is not a known method (known: {', '.join(METHODS)})")
    method = method.lower()
    if method == "grid":
        for p in params.values():
            if not p.is_grid:
                raise _err(source, f"params.{p.name}", "grid search needs a list of values, not a range")
    if not params:
        raise _err(source, "params", "no parameter to search")

    trials = raw.get("trials")
    if trials is not None:
        trials = _checked(source, "trials", POSITIVE_INT, trials)
    timeout = raw.get("timeout")
    if timeout is not None:
        timeout = _checked(source, "timeout", POSITIVE, timeout)
    if method != "grid" and trials is None and timeout is None:
        raise _err(source, "trials", f"method {method!r} needs 'trials' and/or 'timeout'")

    objective = raw.get("objective", "accuracy")
    if isinstance(objective, str):
        objective = {"metric": objective}
    objective = _mapping(source, "objective", objective, OBJECTIVE_KEYS)
    metric = objective.get("metric", "accuracy")
    if metric not in METRICS:
        raise _err(source, "objective.metric", f"{metric!r} is not a known metric (known: {', '.join(METRICS)})")
    direction = objective.get("direction", METRICS[metric])
    if direction not in ("maximize", "minimize"):
        raise _err(source, "objective.direction", f"{direction!r} is not maximize or minimize")

    validation = _mapping(source, "validation", raw.get("validation", {"holdout": 0.2}), VALIDATION_KEYS)
    repeats = _checked(source, "validation.repeats", POSITIVE_INT, validation.get("repeats", 1))
    validation = {k: v for k, v in validation.items() if k != "repeats"} or {"holdout": 0.2}
    if len(validation) != 1:
        raise _err(source, "validation", "give exactly one of 'holdout: FRACTION' or 'kfold: K'")
    holdout = kfold = None
    if "holdout" in validation:
        holdout = _checked(source, "validation.holdout", FRACTION, validation["holdout"])
        if holdout == 0:
            raise _err(source, "validation.holdout", "0 leaves nothing to validate on")
    else:
        kfold = _checked(source, "validation.kfold", POSITIVE_INT, validation["kfold"])
        if kfold < 2:
            raise _err(source, "validation.kfold", f"{kfold!r} must be >= 2")

    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise _err(source, "seed", f"{seed!r} is not an integer")
    storage = raw.get("storage", DEFAULT_STORAGE)
    if not isinstance(storage, str) or "://" not in storage:
        raise _err(source, "storage", f"{storage!r} is not a storage URL (e.g. sqlite:///sweeper.db)")
    description = raw.get("description", "")
    trial_function = raw.get("trial_function")
    if trial_function is not None and (not isinstance(trial_function, str) or ":" not in trial_function):
        raise _err(source, "trial_function", f"{trial_function!r} is not a module:function reference")

    sampler = parse_sampler(source, method, raw.get("sampler"))

    normalised = dict(raw)
    normalised["data"] = {k: v for k, v in data.__dict__.items() if v is not None}
    spec = SweepSpec(
        name=name.strip(), data=data, model=model, params=params, fixed=fixed, method=method,
        trials=trials, timeout=timeout, metric=metric, direction=direction, holdout=holdout,
        kfold=kfold, repeats=repeats, seed=seed, storage=storage, description=str(description),
        callbacks=parse_callbacks(source, raw.get("callbacks")),
        augmentation=parse_augmentation(source, raw.get("augmentation"), data.dataset),
        pruner=parse_pruner(source, raw.get("pruner")),
        sampler=sampler,
        compute=parse_compute(source, raw.get("compute")),
        trial_function=trial_function, source=source,
        raw=normalised,
    )
    if spec.budget == 0:
        raise _err(source, "trials", "the budget is 0 trials")
    if model.lower() == "autokeras":
        from sweeper.automl import check_spec

        check_spec(spec)  # holdout only, no sweeper callbacks/augmentation/optimizer keys
    return spec


def load_spec(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate a sweep file."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(source, "", "no such file") from None
    except OSError as exc:
        raise SpecError(source, "", f"cannot read ({exc.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else "YAML"
        raise SpecError(source, where, f"not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return spec_from_dict(raw, source)
