"""Sections of a sweep file about training: callbacks, augmentation, pruning, compute.

``parse_*`` validate the YAML (one-line ``SpecError`` naming the key) into frozen dataclasses;
the Keras and Optuna objects are built from them in train/callbacks.py and search/strategy.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

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


PRUNERS = {
    "none": {},
    "median": {"n_startup_trials": int, "n_warmup_steps": int, "interval_steps": int},
    "successive_halving": {"min_resource": int, "reduction_factor": int, "min_early_stopping_rate": int},
    "hyperband": {"min_resource": int, "max_resource": int, "reduction_factor": int},
}


def _check_keys(source: str, path: str, raw: dict[str, Any], allowed: set[str]) -> None:
    for k in raw:
        if k not in allowed:
            raise SpecError(source, f"{path}.{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _num(source: str, path: str, v: Any, *, lo: float = 0.0, hi: float = math.inf, integer: bool = False) -> Any:
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and int(v) != v):
        raise SpecError(source, path, f"{v!r} is not {'an integer' if integer else 'a number'}")
    if not lo <= v <= hi:
        raise SpecError(source, path, f"{v!r} is not in [{lo:g}, {hi:g}]")
    return int(v) if integer else float(v)


def _bool(source: str, path: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise SpecError(source, path, f"{v!r} is not true/false")
    return v


def _monitor(source: str, path: str, v: Any) -> str:
    if v not in MONITORS:
        raise SpecError(source, path, f"{v!r} is not a known metric to monitor (known: {', '.join(MONITORS)})")
    return str(v)


def _section(source: str, path: str, raw: Any) -> dict[str, Any]:
    if raw is True:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(source, path, f"{raw!r} is not a mapping (or true for the defaults)")
    return raw


def parse_callbacks(source: str, raw: Any) -> Callbacks:
    if raw is None:
        return Callbacks()
    raw = _section(source, "callbacks", raw)
    _check_keys(source, "callbacks", raw, {"early_stopping", "reduce_lr", "keep_best", "tensorboard"})
    es = rl = None
    if raw.get("early_stopping") not in (None, False):
        d = _section(source, "callbacks.early_stopping", raw["early_stopping"])
        _check_keys(source, "callbacks.early_stopping", d, {"monitor", "patience", "min_delta", "restore_best_weights"})
        p = "callbacks.early_stopping"
        es = EarlyStopping(
            monitor=_monitor(source, f"{p}.monitor", d.get("monitor", "val_loss")),
            patience=_num(source, f"{p}.patience", d.get("patience", 3), integer=True),
            min_delta=_num(source, f"{p}.min_delta", d.get("min_delta", 0.0)),
            restore_best_weights=_bool(source, f"{p}.restore_best_weights", d.get("restore_best_weights", True)),
        )
    if raw.get("reduce_lr") not in (None, False):
        d = _section(source, "callbacks.reduce_lr", raw["reduce_lr"])
        p = "callbacks.reduce_lr"
        _check_keys(source, p, d, {"monitor", "factor", "patience", "min_delta", "min_lr"})
        factor = _num(source, f"{p}.factor", d.get("factor", 0.25), hi=1.0)
        if factor in (0.0, 1.0):
            raise SpecError(source, f"{p}.factor", f"{factor!r} must be strictly between 0 and 1")
        rl = ReduceLR(
            monitor=_monitor(source, f"{p}.monitor", d.get("monitor", "val_loss")),
            factor=factor,
            patience=_num(source, f"{p}.patience", d.get("patience", 2), integer=True),
            min_delta=_num(source, f"{p}.min_delta", d.get("min_delta", 1e-4)),
            min_lr=_num(source, f"{p}.min_lr", d.get("min_lr", 1e-5)),
        )
    return Callbacks(
        early_stopping=es,
        reduce_lr=rl,
        keep_best=_bool(source, "callbacks.keep_best", raw.get("keep_best", False)),
        tensorboard=_bool(source, "callbacks.tensorboard", raw.get("tensorboard", False)),
    )


def parse_augmentation(source: str, raw: Any, dataset: str) -> Augmentation:
    if raw is None or raw is False:
        return Augmentation()
    raw = _section(source, "augmentation", raw)
    keys = {"rotation", "width_shift", "height_shift", "shear", "zoom", "horizontal_flip"}
    _check_keys(source, "augmentation", raw, keys)
    p = "augmentation"
    aug = Augmentation(
        rotation=_num(source, f"{p}.rotation", raw.get("rotation", 0.0), hi=180.0),
        width_shift=_num(source, f"{p}.width_shift", raw.get("width_shift", 0.0), hi=1.0),
        height_shift=_num(source, f"{p}.height_shift", raw.get("height_shift", 0.0), hi=1.0),
        shear=_num(source, f"{p}.shear", raw.get("shear", 0.0), hi=1.0),
        zoom=_num(source, f"{p}.zoom", raw.get("zoom", 0.0), hi=0.9),
        horizontal_flip=_bool(source, f"{p}.horizontal_flip", raw.get("horizontal_flip", False)),
    )
    if aug.horizontal_flip and dataset in DIGIT_DATASETS:
        raise SpecError(source, f"{p}.horizontal_flip",
                        f"flipping digits changes their class (a flipped 2 is no 2); refused for dataset {dataset!r}")
    return aug


def parse_pruner(source: str, raw: Any) -> Pruner:
    if raw is None:
        return Pruner()
    if isinstance(raw, str):
        raw = {"type": raw}
    raw = _section(source, "pruner", raw)
    kind = raw.get("type", "median")
    if kind not in PRUNERS:
        raise SpecError(source, "pruner.type", f"{kind!r} is not a known pruner (known: {', '.join(PRUNERS)})")
    options = {}
    for k, v in raw.items():
        if k == "type":
            continue
        if k not in PRUNERS[kind]:
            raise SpecError(source, f"pruner.{k}", f"unknown option for {kind} (allowed: {', '.join(PRUNERS[kind]) or 'none'})")
        options[k] = _num(source, f"pruner.{k}", v, integer=True)
    return Pruner(kind, options)


def parse_compute(source: str, raw: Any) -> Compute:
    if raw is None:
        return Compute()
    raw = _section(source, "compute", raw)
    _check_keys(source, "compute", raw, {"mixed_precision", "jit_compile", "steps_per_execution", "reuse_models",
                                         "fuse"})
    return Compute(
        mixed_precision=_bool(source, "compute.mixed_precision", raw.get("mixed_precision", False)),
        jit_compile=_bool(source, "compute.jit_compile", raw.get("jit_compile", False)),
        steps_per_execution=_num(source, "compute.steps_per_execution", raw.get("steps_per_execution", 1),
                                 lo=1, integer=True),
        reuse_models=_bool(source, "compute.reuse_models", raw.get("reuse_models", True)),
        fuse=_fuse(source, raw.get("fuse", "off")),
    )


def _fuse(source: str, raw: Any) -> str | int:
    """``off``, ``auto`` or a pack size from 1 to 64 (YAML's bare ``off`` reads as False)."""
    if raw is False:
        return "off"
    if isinstance(raw, str) and raw.strip().lower() in ("off", "auto"):
        return raw.strip().lower()
    if isinstance(raw, int) and not isinstance(raw, bool) and 1 <= raw <= 64:
        return raw
    raise SpecError(source, "compute.fuse", f"{raw!r} is not off, auto or a pack size from 1 to 64")
