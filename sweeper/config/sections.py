"""Sections of a sweep file about training: callbacks, augmentation, pruning, compute, which
trained models are kept (artifacts), and when the search stops (``stop``).

``parse_*`` validate the YAML (one-line ``SpecError`` naming the key) into frozen dataclasses;
the Keras and Optuna objects are built from them in train/callbacks.py and search/strategy.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sweeper.config.values import (
    EPOCHS,
    MAX_EPOCHS,
    MAX_LEARNING_RATE,
    MAX_MIN_DELTA,
    MAX_PACK,
    MAX_REDUCTION_FACTOR,
    MAX_STEPS_PER_EXECUTION,
    MAX_TRIALS,
    OPEN_FRACTION,
    STEPS,
    TRIAL_COUNT,
    TRIALS,
    as_number,
    check_bool,
    check_float,
    check_int,
    checked,
    shown,
    switch,
)
from sweeper.errors import SpecError

DIGIT_DATASETS = ("digits", "mnist5k", "mnist")
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")


@dataclass(frozen=True)
class EarlyStopping:
    monitor: str = "val_loss"
    patience: int = 3
    min_delta: float = 0.0
    restore_best_weights: bool = True


@dataclass(frozen=True)
class ReduceLR:
    monitor: str = "val_loss"
    factor: float = 0.25
    patience: int = 2
    min_delta: float = 1e-4
    min_lr: float = 1e-5


@dataclass(frozen=True)
class Callbacks:
    early_stopping: EarlyStopping | None = None
    reduce_lr: ReduceLR | None = None
    keep_best: bool = False  # restore the weights of the best validation epoch at the end
    tensorboard: bool = False

    @property
    def restores_weights(self) -> bool:
        return self.keep_best or bool(self.early_stopping and self.early_stopping.restore_best_weights)


@dataclass(frozen=True)
class Augmentation:
    rotation: float = 0.0  # degrees
    width_shift: float = 0.0  # fraction of width
    height_shift: float = 0.0
    shear: float = 0.0  # fraction (Keras RandomShear factor)
    zoom: float = 0.0  # fraction
    horizontal_flip: bool = False

    @property
    def active(self) -> bool:
        return any((self.rotation, self.width_shift, self.height_shift, self.shear, self.zoom, self.horizontal_flip))


@dataclass(frozen=True)
class Pruner:
    kind: str = "none"  # none | median | successive_halving | hyperband
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stop:
    """``stop: {patience, min_delta}``: the sweep ends once ``patience`` finished trials in a row
    improved the best by no more than ``min_delta`` (several objectives: left the Pareto front
    unchanged); store/stopping.py decides it from the stored trials."""

    patience: int
    min_delta: float = 0.0


@dataclass(frozen=True)
class Compute:
    """How trials use the hardware: results may differ slightly (mixed precision), never the API."""

    mixed_precision: bool = False  # float16 compute on GPUs (softmax kept in float32)
    jit_compile: bool = False  # XLA-compile the train step
    steps_per_execution: int = 1  # batches per graph call: less Python overhead for small models
    reuse_models: bool = True  # reuse traced models across trials of one structure (reuse.py)
    fuse: str | int = "off"  # off | auto | K: train up to K trials of one structure as one model

    @property
    def active(self) -> bool:
        return self.mixed_precision or self.jit_compile or self.steps_per_execution > 1


@dataclass(frozen=True)
class Artifacts:
    """Which trials' trained models the study keeps, and where (store/artifacts.py)."""

    keep: int | str | None = None  # None: none kept; K: the best K trials'; "all": every completed trial's
    store: str | None = None  # a folder; None: ``<store file stem>.artifacts/`` beside a SQLite store file

    @property
    def active(self) -> bool:
        return self.keep is not None


# Each pruner's options, with the rule for each (steps and resources count epochs).
REDUCTION_FACTOR = check_int(2, MAX_REDUCTION_FACTOR)
PRUNERS: dict[str, dict[str, Any]] = {
    "none": {},
    "median": {"n_startup_trials": TRIAL_COUNT, "n_warmup_steps": STEPS, "interval_steps": EPOCHS},
    "successive_halving": {"min_resource": EPOCHS, "reduction_factor": REDUCTION_FACTOR,
                           "min_early_stopping_rate": check_int(0, MAX_EPOCHS)},
    "hyperband": {"min_resource": EPOCHS, "max_resource": EPOCHS, "reduction_factor": REDUCTION_FACTOR},
}
# Pruner options counted in epochs: none may exceed the sweep's epochs (spec.py checks, it knows them).
PRUNER_EPOCH_OPTIONS = ("min_resource", "max_resource", "n_warmup_steps")

PATIENCE = STEPS
AUGMENTATION = {
    "rotation": check_float(0.0, 180.0),  # degrees
    "width_shift": check_float(0.0, 1.0),
    "height_shift": check_float(0.0, 1.0),
    "shear": check_float(0.0, 1.0),
    "zoom": check_float(0.0, 0.9),
}
MIN_DELTA = check_float(0.0, limit=MAX_MIN_DELTA)
MIN_LR = check_float(0.0, limit=MAX_LEARNING_RATE)
STEPS_PER_EXECUTION = check_int(1, MAX_STEPS_PER_EXECUTION)
STOP_PATIENCE = check_int(1, MAX_TRIALS, "trials")
PACK_SIZE = check_int(1, MAX_PACK)


def _check_keys(source: str, path: str, raw: dict[str, Any], allowed: set[str]) -> None:
    for k in raw:
        if k not in allowed:
            raise SpecError(source, f"{path}.{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _monitor(source: str, path: str, v: Any) -> str:
    if v not in MONITORS:
        raise SpecError(source, path, f"{v!r} is not a known metric to monitor (known: {', '.join(MONITORS)})")
    return str(v)


def parse_callbacks(source: str, raw: Any) -> Callbacks:
    raw = switch(source, "callbacks", raw)
    if raw is None:
        return Callbacks()
    _check_keys(source, "callbacks", raw, {"early_stopping", "reduce_lr", "keep_best", "tensorboard"})
    es = rl = None
    p = "callbacks.early_stopping"
    d = switch(source, p, raw.get("early_stopping"))
    if d is not None:
        _check_keys(source, p, d, {"monitor", "patience", "min_delta", "restore_best_weights"})
        es = EarlyStopping(
            monitor=_monitor(source, f"{p}.monitor", d.get("monitor", "val_loss")),
            patience=checked(source, f"{p}.patience", PATIENCE, d.get("patience", 3)),
            min_delta=checked(source, f"{p}.min_delta", MIN_DELTA, d.get("min_delta", 0.0)),
            restore_best_weights=checked(source, f"{p}.restore_best_weights", check_bool,
                                         d.get("restore_best_weights", True)),
        )
    p = "callbacks.reduce_lr"
    d = switch(source, p, raw.get("reduce_lr"))
    if d is not None:
        _check_keys(source, p, d, {"monitor", "factor", "patience", "min_delta", "min_lr"})
        rl = ReduceLR(
            monitor=_monitor(source, f"{p}.monitor", d.get("monitor", "val_loss")),
            factor=checked(source, f"{p}.factor", OPEN_FRACTION, d.get("factor", 0.25)),
            patience=checked(source, f"{p}.patience", PATIENCE, d.get("patience", 2)),
            min_delta=checked(source, f"{p}.min_delta", MIN_DELTA, d.get("min_delta", 1e-4)),
            min_lr=checked(source, f"{p}.min_lr", MIN_LR, d.get("min_lr", 1e-5)),
        )
    return Callbacks(
        early_stopping=es,
        reduce_lr=rl,
        keep_best=checked(source, "callbacks.keep_best", check_bool, raw.get("keep_best", False)),
        tensorboard=checked(source, "callbacks.tensorboard", check_bool, raw.get("tensorboard", False)),
    )


def parse_augmentation(source: str, raw: Any, dataset: str) -> Augmentation:
    raw = switch(source, "augmentation", raw)
    if raw is None:
        return Augmentation()
    keys = {"rotation", "width_shift", "height_shift", "shear", "zoom", "horizontal_flip"}
    _check_keys(source, "augmentation", raw, keys)
    p = "augmentation"
    aug = Augmentation(
        rotation=checked(source, f"{p}.rotation", AUGMENTATION["rotation"], raw.get("rotation", 0.0)),
        width_shift=checked(source, f"{p}.width_shift", AUGMENTATION["width_shift"], raw.get("width_shift", 0.0)),
        height_shift=checked(source, f"{p}.height_shift", AUGMENTATION["height_shift"], raw.get("height_shift", 0.0)),
        shear=checked(source, f"{p}.shear", AUGMENTATION["shear"], raw.get("shear", 0.0)),
        zoom=checked(source, f"{p}.zoom", AUGMENTATION["zoom"], raw.get("zoom", 0.0)),
        horizontal_flip=checked(source, f"{p}.horizontal_flip", check_bool, raw.get("horizontal_flip", False)),
    )
    if aug.horizontal_flip and dataset in DIGIT_DATASETS:
        raise SpecError(source, f"{p}.horizontal_flip",
                        f"flipping digits changes their class (a flipped 2 is no 2); refused for dataset {dataset!r}")
    return aug


def parse_pruner(source: str, raw: Any) -> Pruner:
    """The pruner's own checks; spec.py also checks its epoch counts against the sweep's epochs."""
    if isinstance(raw, str):
        raw = {"type": raw}
    raw = switch(source, "pruner", raw)
    if raw is None:
        return Pruner()
    kind = raw.get("type", "median")
    if kind not in PRUNERS:
        raise SpecError(source, "pruner.type", f"{kind!r} is not a known pruner (known: {', '.join(PRUNERS)})")
    options = {}
    for k, v in raw.items():
        if k == "type":
            continue
        if k not in PRUNERS[kind]:
            raise SpecError(source, f"pruner.{k}", f"unknown option for {kind} (allowed: {', '.join(PRUNERS[kind]) or 'none'})")
        options[k] = checked(source, f"pruner.{k}", PRUNERS[kind][k], v)
    if options.get("min_resource", 1) > options.get("max_resource", options.get("min_resource", 1)):
        raise SpecError(source, "pruner.min_resource",
                        f"{options['min_resource']!r} is more than max_resource {options['max_resource']!r}")
    return Pruner(kind, options)


def parse_stop(source: str, raw: Any) -> Stop | None:
    """``stop:`` a mapping with ``patience`` (finished trials, >= 1) and ``min_delta`` (>= 0);
    absent, null or false: the sweep runs to its budget."""
    if raw is None or raw is False:
        return None
    if not isinstance(raw, dict):
        raise SpecError(source, "stop",
                        f"{shown(raw)} is not a mapping (e.g. stop: {{patience: 10, min_delta: 0.001}})")
    _check_keys(source, "stop", raw, {"patience", "min_delta"})
    if "patience" not in raw:
        raise SpecError(source, "stop.patience", "missing: how many finished trials in a row without improvement "
                        "end the sweep (e.g. patience: 10)")
    return Stop(patience=checked(source, "stop.patience", STOP_PATIENCE, raw["patience"]),
                min_delta=checked(source, "stop.min_delta", MIN_DELTA, raw.get("min_delta", 0.0)))


def parse_compute(source: str, raw: Any) -> Compute:
    raw = switch(source, "compute", raw)
    if raw is None:
        return Compute()
    _check_keys(source, "compute", raw, {"mixed_precision", "jit_compile", "steps_per_execution", "reuse_models",
                                         "fuse"})
    return Compute(
        mixed_precision=checked(source, "compute.mixed_precision", check_bool, raw.get("mixed_precision", False)),
        jit_compile=checked(source, "compute.jit_compile", check_bool, raw.get("jit_compile", False)),
        steps_per_execution=checked(source, "compute.steps_per_execution", STEPS_PER_EXECUTION,
                                    raw.get("steps_per_execution", 1)),
        reuse_models=checked(source, "compute.reuse_models", check_bool, raw.get("reuse_models", True)),
        fuse=_fuse(source, raw.get("fuse", "off")),
    )


def _fuse(source: str, raw: Any) -> str | int:
    """``off``, ``auto`` or a pack size from 1 to MAX_PACK (YAML's bare ``off`` reads as False)."""
    if raw is False:
        return "off"
    if isinstance(raw, str) and raw.strip().lower() in ("off", "auto"):
        return raw.strip().lower()
    try:
        if isinstance(raw, bool):
            raise ValueError("a flag")
        return PACK_SIZE(raw)
    except ValueError:
        raise SpecError(source, "compute.fuse",
                        f"{shown(as_number(raw))} is not off, auto or a pack size from 1 to {MAX_PACK}") from None


def is_sqlite_file(url: str) -> bool:
    """Whether a storage URL names a SQLite file (its kept models can go beside it)."""
    scheme, _, rest = url.partition("://")
    path = rest[1:] if rest.startswith("/") else rest
    return scheme.split("+", 1)[0].lower() == "sqlite" and path.split("?", 1)[0] not in ("", ":memory:")


_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def split_store_url(store: str) -> tuple[str, str] | None:
    """``s3://BUCKET[/PREFIX]`` -> (bucket, prefix without slashes at its ends); None for a folder
    path. ValueError (one line) for a malformed s3 URL or another scheme's URL."""
    scheme, sep, rest = store.partition("://")
    if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return None
    if scheme.lower() != "s3":
        raise ValueError(f"{store!r}: only folder paths and s3://BUCKET/PREFIX URLs are supported")
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"{store!r} is not a valid s3 URL: {bucket!r} is not a bucket name (3 to 63 lowercase "
                         "letters, digits, '.' or '-'; e.g. s3://my-bucket/models)")
    prefix = prefix.strip("/")
    if any(c in prefix for c in "?#\\") or "//" in prefix or any(p in (".", "..") for p in prefix.split("/")):
        raise ValueError(f"{store!r} is not a valid s3 URL: prefix {prefix!r} (no '?', '#', '\\', empty, '.' "
                         "or '..' parts)")
    return bucket, prefix


def parse_artifacts(source: str, raw: Any, storage: str, stored: bool = False) -> Artifacts:
    """``artifacts: {keep: K | all, store: FOLDER}``. Without ``store`` the models go beside the
    SQLite store file, so another kind of store needs it (a stored definition is not checked
    against today's URL: ``run`` and ``resume`` check the URL they open)."""
    if raw is None:
        return Artifacts()
    if not isinstance(raw, dict):
        raise SpecError(source, "artifacts", f"{shown(raw)} is not a mapping (e.g. 'artifacts: {{keep: 3}}')")
    _check_keys(source, "artifacts", raw, {"keep", "store"})
    if "keep" not in raw:
        raise SpecError(source, "artifacts.keep", "missing: how many trials' models to keep (K >= 1, or all)")
    keep = raw["keep"]
    if not (isinstance(keep, str) and keep.strip().lower() == "all"):
        try:
            keep = TRIALS(keep)
        except ValueError as exc:
            raise SpecError(source, "artifacts.keep", f"{exc}; give K >= 1 or all") from None
    else:
        keep = "all"
    store = raw.get("store")
    if store is not None and (not isinstance(store, str) or not store.strip()):
        raise SpecError(source, "artifacts.store", f"{shown(store)} is not a folder path")
    if store is not None:
        try:
            split_store_url(store.strip())
        except ValueError as exc:
            raise SpecError(source, "artifacts.store", str(exc)) from None
    if store is None and not stored and not is_sqlite_file(storage):
        raise SpecError(source, "artifacts.store", f"needed: storage {storage} is not a SQLite file, so there is "
                        "no folder beside it for the kept models (give one: 'artifacts: {store: FOLDER}')")
    return Artifacts(keep, store.strip() if store else None)


@dataclass(frozen=True)
class WarmStart:
    """``warm_start``: the completed trials a new study starts with (store/warm.py adds them once,
    when the study is made): another study's (``study``, in ``storage``; None: the sweep's own
    store) or the rows of a ``sweeper export --format csv`` file (``csv``)."""

    study: str | None = None
    storage: str | None = None
    csv: str | None = None

    @property
    def label(self) -> str:
        return f"study {self.study}" if self.study else f"{self.csv}"


def parse_warm_start(source: str, raw: Any) -> WarmStart | None:
    """``warm_start: {study: NAME, storage: URL}`` or ``warm_start: {csv: FILE}`` (the file and
    the study are read when the study is made, not here)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise SpecError(source, "warm_start", f"{shown(raw)} is not a mapping (e.g. 'warm_start: {{study: NAME}}' "
                        "or 'warm_start: {csv: FILE}')")
    _check_keys(source, "warm_start", raw, {"study", "storage", "csv"})
    if ("study" in raw) == ("csv" in raw):
        raise SpecError(source, "warm_start", "give exactly one of 'study: NAME' or 'csv: FILE'")
    for key, what in (("study", "study name"), ("storage", "storage URL"), ("csv", "file path")):
        v = raw.get(key)
        if key in raw and (not isinstance(v, str) or not v.strip()):
            raise SpecError(source, f"warm_start.{key}", f"{shown(v)} is not a {what}")
    if "storage" in raw:
        if "csv" in raw:
            raise SpecError(source, "warm_start.storage", "a csv file is read as it is: 'storage' goes with 'study'")
        if "://" not in raw["storage"]:
            raise SpecError(source, "warm_start.storage", f"{shown(raw['storage'])} is not a storage URL (e.g. sqlite:///sweeper.db)")
    return WarmStart(*(raw[k].strip() if k in raw else None for k in ("study", "storage", "csv")))
