"""Conditional parameters' arithmetic, without TensorFlow: a conditional grid's size is the count
of its points, each point holds exactly the parameters that exist at it, and a sweep without
conditions keeps the plain product (the points, their order, their seeds)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from sweeper.config import conditions
from sweeper.config.spec import spec_from_dict
from sweeper.search import space


def spec(params: dict[str, Any]) -> Any:
    return spec_from_dict({"name": "c", "data": {"dataset": "digits"}, "params": params}, source="t")


CASES = {
    "one condition": ({"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1],
                       "momentum": {"values": [0.0, 0.9], "when": {"optimizer": "sgd"}}}, 6),
    "any of the values": ({"optimizer": ["sgd", "rmsprop", "adam"],
                           "momentum": {"values": [0.0, 0.5, 0.9], "when": {"optimizer": ["sgd", "rmsprop"]}}}, 7),
    "all of the keys": ({"optimizer": ["sgd", "adam"], "batchnorm": [True, False],
                         "momentum": {"values": [0.0, 0.9], "when": {"optimizer": "sgd", "batchnorm": False}}}, 5),
    "nested": ({"optimizer": ["sgd", "adam"], "momentum": {"values": [0.0, 0.9], "when": {"optimizer": "sgd"}},
                "optimizer__nesterov": {"values": [True, False], "when": {"momentum": 0.9}},
                "dropout": [0.0, 0.2]}, 2 * (1 + 2) + 2),  # sgd: momentum 0, 0.9 x nesterov; adam
    "a child listed before its parent": ({"model__units_3": {"values": [8, 16], "when": {"model__layers": 3}},
                                          "model__layers": [1, 2, 3]}, 4),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_grid_size_counts_the_points_and_each_holds_exactly_what_exists(case: str) -> None:
    params, size = CASES[case]
    s = spec(params)
    points = space.grid_points(s)
    assert s.grid_size == len(points) == size == s.budget
    assert len({space.params_key(p) for p in points}) == size
    for p in points:
        assert conditions.is_point(s.params, p)
        assert not conditions.missing(s.params, p)


def test_without_conditions_the_grid_is_the_plain_product() -> None:
    s = spec({"optimizer": ["sgd", "adam"], "lr": [0.01, 0.1], "momentum": [0.0, 0.9]})
    names = list(s.params)
    product = [dict(zip(names, c)) for c in itertools.product(*(s.params[n].values for n in names))]
    assert space.grid_points(s) == product and s.grid_size == 8
    assert s.sampler == {}  # TPE's conditional defaults only with conditions


def test_a_trials_seed_comes_from_the_params_it_has() -> None:
    """An absent parameter is not in the params at all: the seed of a conditional point is the seed
    of the same point in a sweep that never had the parameter."""
    with_condition = spec({"optimizer": ["sgd", "adam"], "momentum": {"values": [0.9], "when": {"optimizer": "sgd"}}})
    plain = spec({"optimizer": ["adam"]})
    point = {"optimizer": "adam"}
    assert space.trial_seed(with_condition, space.full_params(with_condition, point)) == \
        space.trial_seed(plain, space.full_params(plain, point))


def test_a_partly_stored_point_is_missing_what_exists_at_its_values() -> None:
    s = spec(CASES["nested"][0])
    assert conditions.missing(s.params, {"optimizer": "sgd", "model__dropout": 0.0}) == ["optimizer__momentum"]
    assert conditions.missing(s.params, {"optimizer": "sgd", "optimizer__momentum": 0.9, "model__dropout": 0.0}) == \
        ["optimizer__nesterov"]
    assert conditions.missing(s.params, {"optimizer": "adam", "model__dropout": 0.0}) == []
    assert not conditions.is_point(s.params, {"optimizer": "adam", "optimizer__momentum": 0.9, "model__dropout": 0.0})
