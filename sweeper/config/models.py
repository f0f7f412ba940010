"""Model registry: a name in the sweep file -> a builder function.

A builder takes ``meta`` (scikeras: ``X_shape_``, ``n_classes_``) plus keyword parameters and
returns an uncompiled ``keras.Model``; scikeras compiles it with the routed optimizer. Builder
modules import Keras inside the function so that validating a sweep file stays instant.
Users bring their own builder as ``model: package.module:function``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Callable

from sweeper.config import conditions
from sweeper.config.values import MAX_LAYERS, err
from sweeper.errors import SweeperError

BUILTIN: dict[str, str] = {
    "mlp": "sweeper.train.models.mlp:build_mlp",
    "cnn": "sweeper.train.models.cnn:build_cnn",
    "cnn5": "sweeper.train.models.cnn5:build_cnn5",
    "sopcnn": "sweeper.train.models.sopcnn:build_sopcnn",
    "vgg": "sweeper.train.models.vgg:build_vgg",
    "cifar_cnn": "sweeper.train.models.cifar_cnn:build_cifar_cnn",
    # Not a Keras builder: a signature for the spec; train/automl.py runs the search (extra sweeper[automl]).
    "autokeras": "sweeper.config.autokeras:autokeras_search",
}

Builder = Callable[..., Any]


def resolve_builder(name: str) -> Builder:
    """Return the builder for a registered name or a ``module:function`` reference."""
    target = BUILTIN.get(name.lower(), name)
    if ":" not in target:
        known = ", ".join(sorted(BUILTIN))
        raise SweeperError(f"unknown model {name!r} (known: {known}, or module:function)")
    module_name, _, func_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SweeperError(f"model {name!r}: cannot import {module_name!r} ({exc})") from None
    except Exception as exc:  # the user's module raised while importing: its first line, no traceback
        first = (str(exc).strip().splitlines() or [""])[0]
        raise SweeperError(f"model {name!r}: importing {module_name!r} failed ({type(exc).__name__}: {first})") from None
    builder = getattr(module, func_name, None)
    if not callable(builder):
        raise SweeperError(f"model {name!r}: {module_name!r} has no function {func_name!r}")
    return builder


def builder_params(builder: Builder) -> dict[str, Any]:
    """Keyword parameters of a builder (what ``model__<name>`` may set), with their defaults."""
    out = {}
    for p in inspect.signature(builder).parameters.values():
        if p.name in ("meta", "compile_kwargs", "params") or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = None if p.default is inspect.Parameter.empty else p.default
    return out


def numbered_params(builder: Builder) -> list[str]:
    """The per-layer widths a family takes besides its signature (``units_1`` ... ``units_8``
    for mlp, ``filters_1`` ... for cnn), named by its builder's ``numbered`` attribute: absent
    ones take the family's default widths, and one past ``layers`` fails the trial."""
    name = getattr(builder, "numbered", None)
    return [f"{name}_{k}" for k in range(1, MAX_LAYERS + 1)] if name else []


def model_keys(builder: Builder) -> set[str]:
    """Every name ``model__<name>`` may set for this builder."""
    return set(builder_params(builder)) | set(numbered_params(builder))


def check_widths(source: str, builder: Builder, params: dict[str, Any], fixed: dict[str, Any]) -> None:
    """A per-layer width (``units_3``) searched or fixed where some trials have fewer layers
    would fail those trials: refused in one line, naming the condition it needs."""
    name = getattr(builder, "numbered", None)
    if not name:
        return
    layers = params.get("model__layers")
    for key in [*params, *fixed]:
        found = re.fullmatch(rf"model__{name}_(\d+)", key)
        if not found:
            continue
        k = int(found.group(1))
        if layers is None:
            counts = [fixed.get("model__layers", builder_params(builder).get("layers"))]
        elif key in params and "model__layers" in conditions.required(params, key):
            counts = conditions.required(params, key)["model__layers"]
        else:
            counts = list(layers.values) if layers.values is not None else \
                list(range(int(layers.low), int(layers.high) + 1, int(layers.step or 1)))
        short = sorted(int(n) for n in counts if int(n) < k)
        if short:
            where = "params" if key in params else "training"
            raise err(source, f"{where}.{key}", f"trials with model__layers {short[0]} would get it but have no layer {k} "
                      f"(give it a condition, when: {{model__layers: [...]}}, of {k} layers or more)")
