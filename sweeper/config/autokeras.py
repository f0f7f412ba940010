"""What a ``model: autokeras`` sweep may set, checked at validation (no AutoKeras import).

The trial itself (one AutoKeras ImageClassifier search per trial) lives in train/automl.py.
"""

from __future__ import annotations

from typing import Any, Callable

from sweeper.config.values import MAX_TRIALS, check_int
from sweeper.errors import SpecError, SweeperError

NAME = "autokeras"
MISSING = "model 'autokeras' needs the optional extra: pip install 'sweeper[automl]' (autokeras 3.0.0)"
TUNERS = ("greedy", "bayesian", "hyperband", "random")
BLOCK_TYPES = ("vanilla", "resnet", "xception", "efficient")  # None: AutoKeras searches them all
# What an autokeras sweep may set: AutoKeras chooses the architecture, optimizer and learning rate.
TRAINING_KEYS = ("epochs", "batch_size")
MAX_TRIALS_RULE = check_int(1, MAX_TRIALS, "trials")  # model__max_trials: models one trial tries


def autokeras_search(
    meta: dict[str, Any],
    max_trials: int = 3,
    tuner: str = "greedy",
    block_type: str | None = None,
) -> Any:
    """An AutoKeras ImageClassifier search (``model: autokeras``): ``max_trials`` models tried by
    ``tuner`` (greedy, bayesian, hyperband, random); ``block_type`` restricts the image block
    (vanilla, resnet, xception, efficient; default: AutoKeras searches all of them, and some
    download pretrained ImageNet weights). Not a Keras builder: sweeper runs it through
    ``sweeper.train.automl.evaluate (train/automl.py)``."""
    raise SweeperError(
        "model 'autokeras' is an AutoKeras search, not a Keras model builder: it runs only as a "
        "sweep trial (sweeper run); there is no scikeras model to build or refit "
        "(sweeper best / report --best do not apply)"
    )


def check_spec(spec: Any) -> None:
    """Refuse what an AutoKeras trial cannot honour in a ``SweepSpec`` (config/spec.py calls this
    while validating, so this module does not import it back)."""
    src = spec.source

    def err(path: str, msg: str) -> SpecError:
        return SpecError(src, path, msg)

    if spec.kfold is not None:
        raise err("validation.kfold", "model 'autokeras' searches on one holdout split: use "
                  "validation: {holdout: FRACTION} (k-fold would repeat the whole search per fold)")
    if spec.repeats != 1:
        raise err("validation.repeats", "model 'autokeras' runs one search per trial: repeats must be 1")
    for section, what in (("augmentation", spec.augmentation.active), ("compute", spec.compute.active)):
        if what:
            raise err(section, f"model 'autokeras' does not use sweeper's {section} settings "
                      "(AutoKeras searches its own augmentation and training)")
    if spec.pruner.kind != "none":
        raise err("pruner", "model 'autokeras' runs one AutoKeras search per trial: no one model's epochs are "
                  "reported, so a pruner could never stop a trial; remove 'pruner'")
    cb = spec.callbacks
    if cb.early_stopping or cb.reduce_lr or cb.keep_best or cb.tensorboard:
        raise err("callbacks", "model 'autokeras' does not use sweeper's callbacks (AutoKeras early-stops "
                  "its own search and keeps each model's best epoch)")
    searched = {k: ("params", p.values if p.values is not None else None) for k, p in spec.params.items()}
    fixed = {k: ("training", (v,)) for k, v in spec.fixed.items()}
    for key, (section, values) in {**fixed, **searched}.items():
        if key not in TRAINING_KEYS and not key.startswith("model__"):
            raise err(f"{section}.{key}", "model 'autokeras' chooses the optimizer itself; it takes "
                      f"{', '.join(TRAINING_KEYS)} and model__max_trials/tuner/block_type")
        rule = _VALUE_RULES.get(key)
        if rule is None:
            continue
        if values is None:  # a range: only max_trials is numeric
            if key != "model__max_trials":
                raise err(f"{section}.{key}", "give a list of values")
            continue
        for v in values:
            problem = rule(v)
            if problem:
                raise err(f"{section}.{key}", problem)


def _is_tuner(v: Any) -> str | None:
    return None if v in TUNERS else f"{v!r} is not an AutoKeras tuner (known: {', '.join(TUNERS)})"


def _is_block(v: Any) -> str | None:
    ok = v is None or v in BLOCK_TYPES
    return None if ok else f"{v!r} is not an AutoKeras image block (known: {', '.join(BLOCK_TYPES)}, or null: all)"


def _is_count(v: Any) -> str | None:
    try:
        MAX_TRIALS_RULE(v)
    except ValueError as exc:
        return str(exc)
    return None


_VALUE_RULES: dict[str, Callable[[Any], str | None]] = {
    "model__tuner": _is_tuner, "model__block_type": _is_block, "model__max_trials": _is_count,
}
