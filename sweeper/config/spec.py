"""Sweep file (YAML) -> validated, typed ``SweepSpec``. Every error names the file and key path.

Parameter keys are scikeras routed names (``optimizer__learning_rate``, ``model__dropout``,
``batch_size`` ...), so a stored trial's params rebuild its estimator with ``set_params``.
Short aliases (``lr``, ``dropout``, ``batchnorm`` ...) are accepted and normalised.
Nothing here imports TensorFlow: ``sweeper validate`` answers at once.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import yaml

from sweeper.config import conditions
from sweeper.config.dataset import DataSpec, parse_data
from sweeper.config.objectives import (
    DEFAULT_OBJECTIVES,
    Constraint,
    Latency,
    Objective,
    parse_constraints,
    parse_latency,
    parse_objectives,
)
from sweeper.config.params import (
    STORED,
    ParamSpec,
    canonical_key,
    check_key,
    parse_params,
)
from sweeper.config.params import value as param_value
from sweeper.config.sampler import parse_sampler
from sweeper.config.sections import (
    PRUNER_EPOCH_OPTIONS,
    Artifacts,
    Augmentation,
    Callbacks,
    Compute,
    Pruner,
    Stop,
    WarmStart,
    parse_artifacts,
    parse_augmentation,
    parse_callbacks,
    parse_compute,
    parse_pruner,
    parse_stop,
    parse_warm_start,
)
from sweeper.config.tracking import Tracking, parse_tracking
from sweeper.config.values import (
    FRACTION,
    MAX_FOLDS,
    MAX_REPEATS,
    MAX_WORKER_DEATHS,
    SECONDS,
    SEED,
    TRIALS,
    check_int,
    checked,
    err,
    mapping,
)
from sweeper.errors import SpecError, SweeperError

__all__ = ["SweepSpec", "DataSpec", "ParamSpec", "canonical_key", "spec_from_dict", "load_spec", "from_stored"]

METHODS = ("grid", "random", "tpe", "cmaes", "gp", "nsga2")
SINGLE_OBJECTIVE_METHODS = ("cmaes",)  # Optuna's CmaEsSampler refuses multi-objective studies
DEFAULT_STORAGE = "sqlite:///sweeper.db"

TOP_KEYS = {
    "name", "description", "data", "model", "params", "method", "trials", "timeout",
    "objective", "validation", "training", "seed", "storage", "trial_function",
    "callbacks", "augmentation", "pruner", "compute", "sampler", "max_worker_deaths",
    "constraints", "latency", "seeding", "stop", "artifacts", "warm_start", "tracking",
}
VALIDATION_KEYS = {"holdout", "kfold", "repeats"}
MAX_NAME = 100
STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,%d}" % (MAX_NAME - 1))
MAX_GRID_POINTS = 100_000  # every grid point is queued as a trial up front; more is a mistake
TRAINING_DEFAULTS: dict[str, Any] = {"epochs": 10, "batch_size": 128}
KFOLD = check_int(2, MAX_FOLDS, "folds")
REPEATS = check_int(1, MAX_REPEATS, "repeats")
WORKER_DEATHS = check_int(1, MAX_WORKER_DEATHS)
STORED_SEED = check_int(-(2**63), 2**63 - 1)  # studies stored before negative seeds were refused


# 2: trial seeds leave ``epochs`` out, so trials that differ only in epochs start alike and the
# shorter is the longer one's beginning (a pack trains them once); 1: every param (earlier studies).
SEED_RULE = 2

# How each fit is seeded. "trial": every configuration from its own seed (trial_seed), each split
# and repeat from its own (fit_seed), rows reshuffled every epoch. "scikeras": every fit as
# ``KerasClassifier(random_state=seed)`` seeds it (one seed for every configuration and split,
# Keras's own batch order), so a GridSearchCV over that classifier gets the same scores.
SEEDINGS = ("trial", "scikeras")


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
    metric: str = "accuracy"  # the first objective's (what trials are scored and curved on)
    direction: str = "maximize"
    objectives: tuple[Objective, ...] = DEFAULT_OBJECTIVES  # all of them, the first included
    constraints: tuple[Constraint, ...] = ()
    latency: Latency = field(default_factory=Latency)
    holdout: float | None = 0.2
    kfold: int | None = None
    repeats: int = 1  # each split trained with this many seeds; mean and std over all runs
    seed: int = 0
    seeding: str = SEEDINGS[0]
    storage: str = DEFAULT_STORAGE
    callbacks: Callbacks = field(default_factory=Callbacks)
    augmentation: Augmentation = field(default_factory=Augmentation)
    pruner: Pruner = field(default_factory=Pruner)
    sampler: dict[str, Any] = field(default_factory=dict)  # options of the method's Optuna sampler
    compute: Compute = field(default_factory=Compute)
    stop: Stop | None = None  # the stop rule (None: run to the budget)
    artifacts: Artifacts = field(default_factory=Artifacts)  # which trials' trained models are kept
    warm_start: WarmStart | None = None  # earlier completed trials the study starts with (store/warm.py)
    tracking: Tracking = field(default_factory=Tracking)  # where each trial is logged live (tracking/live.py)
    description: str = ""
    trial_function: str | None = None  # advanced: module:function replacing the Keras trial
    max_worker_deaths: int = 2  # a trial whose worker died this often fails instead of running again
    # How trial seeds are made (search/space.py: trial_seed): SEED_RULE for studies made now, the
    # rule stored with the study for older ones (store/studies.py sets it when a study opens).
    seed_rule: int = SEED_RULE
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def grid_size(self) -> int | None:
        """Number of grid points, or None when some parameter is a continuous range."""
        if not all(p.is_grid for p in self.params.values()):
            return None
        if conditions.has_conditions(self.params):
            return conditions.grid_size(self.params)  # the product over the parameters that exist
        return math.prod(len(p.values or ()) for p in self.params.values())

    @property
    def seeds_as_scikeras(self) -> bool:
        """Every fit seeded as ``KerasClassifier(random_state=seed)`` seeds it (``seeding: scikeras``)."""
        return self.seeding == "scikeras"

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def objective_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def measures_latency(self) -> bool:
        """Latency costs timed passes after training: measured only when an objective or a
        constraint needs it."""
        return any(o.metric == "latency_ms" for o in self.objectives) or \
            any(c.metric == "latency_ms" for c in self.constraints)

    @property
    def budget(self) -> int | None:
        """Trials to finish: the grid size (capped by ``trials``) or ``trials``."""
        if self.method == "grid":
            size = self.grid_size or 0
            return min(size, self.trials) if self.trials else size
        return self.trials


# --------------------------------------------------------------------------- values
def _max_epochs(params: dict[str, ParamSpec], fixed: dict[str, Any]) -> int:
    """The most epochs a trial of the sweep trains (a searched ``epochs`` or the fixed one)."""
    p = params.get("epochs")
    if p is None:
        return int(fixed["epochs"])
    return int(max(p.values) if p.values is not None else p.high)  # type: ignore[type-var, arg-type]


def _check_pruner_epochs(source: str, pruner: Pruner, epochs: int) -> None:
    """A pruner's steps and resources count epochs: more than a trial trains can never be met."""
    for key in PRUNER_EPOCH_OPTIONS:
        v = pruner.options.get(key)
        if v is not None and v > epochs:
            raise err(source, f"pruner.{key}", f"{v!r} is more than the sweep's {epochs} epochs "
                      "(a trial reports once per epoch)")


def from_stored(raw: Any, name: str) -> SweepSpec:
    """The definition stored with a study, validated when the study was made: read back without
    the data files or the user's model module (they may live on another host)."""
    return spec_from_dict(raw, source=f"study {name}", stored=True)


def spec_from_dict(raw: Any, source: str = "", stored: bool = False) -> SweepSpec:
    """Validate a parsed sweep definition; raises ``SpecError`` naming the key path. ``stored``:
    a study's definition read back, whose parameter values may predate today's bounds."""
    token = STORED.set(stored)
    try:
        return _spec_from_dict(raw, source, stored)
    finally:
        STORED.reset(token)


def _spec_from_dict(raw: Any, source: str, stored: bool) -> SweepSpec:
    raw = mapping(source, "", raw, TOP_KEYS)
    if not raw:
        raise err(source, "", "empty sweep file")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise err(source, "name", f"{name!r} is not a study name")
    if not stored and not STUDY_NAME.fullmatch(name.strip()):
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise err(source, "name", f"{shown!r} is not a study name: up to {MAX_NAME} letters, digits, '.', '_' "
                  "or '-', starting with a letter or digit (it names the report folder too)")
    if "data" not in raw:
        raise err(source, "data", "missing: which dataset to use (e.g. 'data: {dataset: mnist5k}')")
    data = parse_data(source, raw["data"], stored)

    from sweeper.config.models import check_widths, model_keys, resolve_builder

    model = raw.get("model", "mlp")
    if not isinstance(model, str):
        raise err(source, "model", f"{model!r} is not a model name")
    builder, builder_keys = None, None  # None: any model__ key (a stored study's, checked when made)
    if not stored:
        try:
            builder = resolve_builder(model)
        except SweeperError as exc:
            raise err(source, "model", str(exc)) from None
        builder_keys = model_keys(builder)

    params = parse_params(source, mapping(source, "params", raw.get("params")), builder_keys)

    fixed: dict[str, Any] = dict(TRAINING_DEFAULTS)
    for key, value in mapping(source, "training", raw.get("training")).items():
        canon = check_key(source, f"training.{key}", str(key), builder_keys)
        if isinstance(value, (list, dict)):
            raise err(source, f"training.{key}", "fixed settings take one value; search it under 'params'")
        fixed[canon] = param_value(source, f"training.{key}", canon, value)
    if builder is not None:
        check_widths(source, builder, params, fixed)  # no trial has a width past its layers

    method = raw.get("method", "grid" if all(p.is_grid for p in params.values()) else "tpe")
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise err(source, "method", f"{method!r} is not a known method (known: {', '.join(METHODS)})")
    method = method.lower()
    if method == "gp" and not stored:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise err(source, "method", "'gp' runs Optuna's GPSampler, which needs PyTorch: pip install 'sweeper[gp]'")
    if method == "grid":
        for p in params.values():
            if not p.is_grid:
                raise err(source, f"params.{p.name}", "grid search needs a list of values, not a range")
    if not params:
        raise err(source, "params", "no parameter to search")

    trials = raw.get("trials")
    if trials is not None:
        trials = checked(source, "trials", TRIALS, trials)
    timeout = raw.get("timeout")
    if timeout is not None:
        timeout = checked(source, "timeout", SECONDS, timeout)
    if method != "grid" and trials is None and timeout is None:
        raise err(source, "trials", f"method {method!r} needs 'trials' and/or 'timeout'")

    objectives = parse_objectives(source, raw.get("objective"))
    metric, direction = objectives[0].metric, objectives[0].direction
    constraints = parse_constraints(source, raw.get("constraints"))
    latency = parse_latency(source, raw.get("latency"))
    if len(objectives) > 1 and method in SINGLE_OBJECTIVE_METHODS:
        raise err(source, "method", f"{method!r} takes one objective (Optuna's CmaEsSampler); "
                  "use tpe, nsga2, gp, random or grid with several")

    validation = mapping(source, "validation", raw.get("validation", {"holdout": 0.2}), VALIDATION_KEYS)
    repeats = checked(source, "validation.repeats", REPEATS, validation.get("repeats", 1))
    validation = {k: v for k, v in validation.items() if k != "repeats"} or {"holdout": 0.2}
    if len(validation) != 1:
        raise err(source, "validation", "give exactly one of 'holdout: FRACTION' or 'kfold: K'")
    holdout = kfold = None
    if "holdout" in validation:
        holdout = checked(source, "validation.holdout", FRACTION, validation["holdout"])
        if holdout == 0:
            raise err(source, "validation.holdout", "0 leaves nothing to validate on")
    else:
        kfold = checked(source, "validation.kfold", KFOLD, validation["kfold"])

    seed = checked(source, "seed", STORED_SEED if stored else SEED, raw.get("seed", 0))
    seeding = raw.get("seeding", SEEDINGS[0])
    if seeding not in SEEDINGS:
        raise err(source, "seeding", f"{seeding!r} is not one of {', '.join(SEEDINGS)}")
    storage = raw.get("storage", DEFAULT_STORAGE)
    if not isinstance(storage, str) or "://" not in storage:
        raise err(source, "storage", f"{storage!r} is not a storage URL (e.g. sqlite:///sweeper.db)")
    description = raw.get("description", "")
    trial_function = raw.get("trial_function")
    if trial_function is not None and (not isinstance(trial_function, str) or ":" not in trial_function):
        raise err(source, "trial_function", f"{trial_function!r} is not a module:function reference")

    sampler = parse_sampler(source, method, raw.get("sampler"), conditions.has_conditions(params))
    max_worker_deaths = checked(source, "max_worker_deaths", WORKER_DEATHS, raw.get("max_worker_deaths", 2))

    normalised = dict(raw)
    normalised["data"] = {k: v for k, v in data.__dict__.items() if v is not None}
    spec = SweepSpec(
        name=name.strip(), data=data, model=model, params=params, fixed=fixed, method=method,
        trials=trials, timeout=timeout, metric=metric, direction=direction, objectives=objectives,
        constraints=constraints, latency=latency, holdout=holdout,
        kfold=kfold, repeats=repeats, seed=seed, seeding=seeding, storage=storage, description=str(description),
        callbacks=parse_callbacks(source, raw.get("callbacks")),
        augmentation=parse_augmentation(source, raw.get("augmentation"), data.dataset),
        pruner=parse_pruner(source, raw.get("pruner")),
        sampler=sampler,
        compute=parse_compute(source, raw.get("compute")),
        stop=parse_stop(source, raw.get("stop")),
        artifacts=parse_artifacts(source, raw.get("artifacts"), storage, stored),
        warm_start=parse_warm_start(source, raw.get("warm_start")),
        tracking=parse_tracking(source, raw.get("tracking")),
        trial_function=trial_function, max_worker_deaths=max_worker_deaths, source=source,
        raw=normalised,
    )
    if method == "grid" and not stored and (spec.grid_size or 0) > MAX_GRID_POINTS and \
            (trials is None or trials > MAX_GRID_POINTS):
        raise err(source, "params", f"the grid has {spec.grid_size:,} points; sweeper queues at most "
                  f"{MAX_GRID_POINTS:,} (shorten a list, or use method: random or tpe with trials: N)")
    if not stored:
        _check_pruner_epochs(source, spec.pruner, _max_epochs(params, fixed))
    if spec.multi_objective and spec.pruner.kind != "none":
        raise err(source, "pruner", f"{spec.pruner.kind!r} cannot prune a study of {len(objectives)} objectives "
                  "(Optuna's trial.report/should_prune take one); remove 'pruner' or keep one objective")
    if spec.budget == 0:
        raise err(source, "trials", "the budget is 0 trials")
    if spec.artifacts.active and (trial_function or model.lower() == "autokeras"):
        raise err(source, "artifacts", "only sweeper's Keras fits keep models (a trial_function returns numbers, "
                  "an AutoKeras search its own model)")
    if model.lower() == "autokeras" and not stored:
        from sweeper.config.autokeras import check_spec

        check_spec(spec)  # holdout only, no sweeper callbacks/augmentation/optimizer keys
    return spec


def apply_overrides(raw: Any, overrides: Sequence[str], source: str) -> Any:
    """``--set KEY=VALUE`` on top of a sweep file: KEY is a dotted path (``training.epochs``,
    ``data.limit``), VALUE is read as YAML (``3``, ``[0.1, 0.2]``, ``{dataset: digits}``)."""
    if not overrides:
        return raw
    if not isinstance(raw, dict):
        raise SpecError(source, "", "the file is not a mapping: nothing to --set")
    raw = json.loads(json.dumps(raw, default=str))  # a deep copy; the file's mapping stays as read
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise SpecError("--set", item, "expected KEY=VALUE, e.g. training.epochs=1")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            raise SpecError("--set", key, f"{text!r} is not a YAML value") from None
        node = raw
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SpecError("--set", key, f"{part!r} is not a mapping in {source}")
            node = child
        node[parts[-1]] = value
    return raw


def load_spec(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a sweep file (with ``--set`` overrides applied first)."""
    from sweeper.config.yaml_file import read_yaml

    source = str(path)
    return spec_from_dict(apply_overrides(read_yaml(path), overrides, source), source)
