"""A pack member's starting point: the standalone Keras model it stands for (``keras_model``) and
its initial weights and dropout seeds (``initial_weights``), those that model would have after
``set_random_seed(member.seed)``, without building it for every member.

Building the model costs about 45 ms, as much as a fused member's 3 epochs of the notebook MLP.
Its random draws are few and simple: each seeded initializer and each Dropout seed generator
takes one ``random.randint(1, 10**9)`` from Python's generator when its layer is made, and the
initializer then draws its values from that integer seed alone (stateless ops). So one template
model per shape says which draw feeds which weight (a ``Recipe``), checked by making the
template's own weights again from its seed; each member then costs its few initializer calls.
Where the check fails (a Keras that draws otherwise), members build their models as before.
What this relies on is in keras_mirror.py (``SEED_DRAWS``, ``INITIALIZERS``, ``DROPOUT_SEEDS``).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sweeper.train.fused.structure import Structure, family_builder
from sweeper.train.keras_mirror import (
    constant_initializers,
    default_seed_draws,
    dropout_seeds,
    initializer_seed,
    initializer_values,
    weight_initializer,
)
from sweeper.train.runtime import set_random_seed_keeping_kernels

TEMPLATE_SEED = 1234
MAX_DRAWS = 256  # more draws than any fused model's layers make


def keras_model(structure: Structure, member: Any, input_shape: Sequence[int], n_classes: int) -> Any:
    """The standalone Keras model ``member`` stands for (set a result's weights into it to predict)."""
    meta = {"X_shape_": (None, *input_shape), "n_classes_": n_classes}
    return family_builder(structure)(meta, dropout=member.dropout, l2=member.l2, **vars(structure))


@dataclass(frozen=True)
class Recipe:
    """How a model of one shape gets its initial weights from Python's generator."""

    draws: int  # randint draws the build makes
    # Per weight: (its initializer's draw, class, config, shape), or its value where no draw sets it.
    weights: tuple[tuple[int, Any, dict[str, Any], tuple[int, ...]] | np.ndarray, ...]
    dropout: tuple[int, ...]  # the draw of each Dropout layer's seed


_RECIPES: dict[tuple[Any, ...], Recipe | None] = {}


def _made(recipe: Recipe, draws: list[int]) -> list[np.ndarray]:
    out = []
    for w in recipe.weights:
        if isinstance(w, np.ndarray):
            out.append(w.copy())
        else:
            i, cls, config, shape = w
            out.append(initializer_values(cls, config, draws[i], shape))
    return out


def _recipe(structure: Structure, member: Any, input_shape: Sequence[int], n_classes: int) -> Recipe | None:
    """The template's recipe, checked against the template itself; None where it does not hold."""
    set_random_seed_keeping_kernels(TEMPLATE_SEED)
    model = keras_model(structure, member, input_shape, n_classes)
    after = random.getstate()
    random.seed(TEMPLATE_SEED)
    draws, made = [], None  # the build's draws, and how many it made (the generator's state after them)
    for n in range(MAX_DRAWS + 1):
        if made is None and random.getstate() == after:
            made = n
        draws += default_seed_draws(1)
    where = {id(v): (layer, v) for layer in model.layers for v in layer.weights}
    weights: list[Any] = []
    try:
        for v in model.weights:
            layer, var = where[id(v)]
            init = weight_initializer(layer, var)
            if isinstance(init, constant_initializers()):
                weights.append(np.asarray(v.numpy()))
            elif (seed := initializer_seed(init)) is not None:
                weights.append((draws.index(seed), type(init), init.get_config(), tuple(v.shape)))
            else:
                return None
        dropout = tuple(draws.index(seed) for seed in dropout_seeds(model))
    except (KeyError, ValueError):
        return None
    if made is None:
        return None
    recipe = Recipe(made, tuple(weights), dropout)
    again = _made(recipe, draws)
    if not all(np.array_equal(a, b) for a, b in zip(again, model.get_weights(), strict=True)):
        return None
    return recipe


def initial_weights(structure: Structure, member: Any, input_shape: Sequence[int],
                    n_classes: int) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """``member``'s initial weights (Keras's weight order) and its Dropout layers' seeds; leaves
    every generator seeded from ``member.seed`` as building its model would."""
    key = (structure, member.dropout > 0, member.l2 > 0, tuple(input_shape), n_classes)
    if key not in _RECIPES:
        _RECIPES[key] = _recipe(structure, member, input_shape, n_classes)
    recipe = _RECIPES[key]
    set_random_seed_keeping_kernels(member.seed)
    if recipe is None:
        model = keras_model(structure, member, input_shape, n_classes)
        return model.get_weights(), dropout_seeds(model)
    draws = default_seed_draws(recipe.draws)
    return _made(recipe, draws), tuple(draws[i] for i in recipe.dropout)
