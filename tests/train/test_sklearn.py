"""SweeperClassifier as a scikit-learn classifier: real fits on tiny data (300 digits, a 16 or 32
unit MLP, 2-3 epochs), no mocks. ``is_classifier``, stratified cross-validation, soft voting,
``clone``, pickling, and the optimizer staying a name in ``get_params``."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.ensemble import VotingClassifier
from sklearn.model_selection import (
    KFold,
    StratifiedKFold,
    check_cv,
    cross_val_score,
    train_test_split,
)

from sweeper.config.spec import SweepSpec, spec_from_dict
from sweeper.search.space import full_params
from sweeper.train.classifier import SweeperClassifier
from sweeper.train.data import Dataset, load_dataset
from sweeper.train.estimator import make_estimator
from sweeper.train.runtime import configure_tensorflow

SPEC: dict[str, Any] = {"name": "sk", "data": {"dataset": "digits", "limit": 300}, "model": "mlp",
                        "params": {"model__dropout": [0.0]},
                        "training": {"epochs": 2, "batch_size": 32, "model__units": 16}}


@pytest.fixture(scope="module")
def spec() -> SweepSpec:
    configure_tensorflow()
    return spec_from_dict(SPEC)


@pytest.fixture(scope="module")
def digits(spec: SweepSpec) -> Dataset:
    ds = load_dataset(spec.data)
    assert ds.x.shape == (300, 8, 8, 1) and len(np.unique(ds.y)) == 10
    return ds


def estimator(spec: SweepSpec, seed: int | None = 0, **overrides: Any) -> Any:
    return make_estimator(spec, {**full_params(spec, {"model__dropout": 0.0}), **overrides}, seed)


def test_is_a_classifier_and_check_cv_stratifies(spec: SweepSpec, digits: Dataset) -> None:
    est = estimator(spec)
    assert isinstance(est, SweeperClassifier)
    assert is_classifier(est)
    assert est.__sklearn_tags__().estimator_type == "classifier"
    cv = check_cv(3, digits.y, classifier=True)
    assert isinstance(cv, StratifiedKFold) and cv.n_splits == 3


def test_cross_val_score_stratifies_label_sorted_data(spec: SweepSpec, digits: Dataset) -> None:
    order = np.argsort(digits.y, kind="stable")
    x, y = digits.x[order], digits.y[order]
    assert np.all(np.diff(y) >= 0)  # sorted: unstratified, unshuffled folds hold out whole classes
    # lr 0.01 and 32 units so that 3 epochs on 200 rows learn something (observed 0.70-0.73 over seeds 0-3).
    est = estimator(spec, epochs=3, model__units=32, optimizer__learning_rate=0.01)
    stratified = cross_val_score(est, x, y, cv=3)
    kfold = cross_val_score(est, x, y, cv=KFold(3))  # observed 0.00-0.15: test classes unseen in training
    assert stratified.mean() > 0.5, stratified
    assert kfold.mean() < 0.3, kfold
    assert stratified.mean() > kfold.mean() + 0.3, (stratified, kfold)


def test_soft_voting_of_two_estimators(spec: SweepSpec, digits: Dataset) -> None:
    x_train, x_test, y_train, y_test = train_test_split(digits.x, digits.y, test_size=100, stratify=digits.y,
                                                        random_state=0)
    vote = VotingClassifier([("a", estimator(spec, seed=1, epochs=3, optimizer__learning_rate=0.01)),
                             ("b", estimator(spec, seed=2, epochs=3, optimizer__learning_rate=0.01))],
                            voting="soft")
    vote.fit(x_train, y_train)
    assert [name for name, _ in vote.named_estimators_.items()] == ["a", "b"]
    assert all(hasattr(e, "model_") for e in vote.estimators_)
    proba = vote.predict_proba(x_test)
    assert proba.shape == (100, 10) and np.allclose(proba.sum(axis=1), 1.0, atol=1e-4)
    predicted = vote.predict(x_test)
    assert set(predicted) <= set(range(10))
    assert np.mean(predicted == y_test) > 0.3  # chance is 0.1


def test_clone_is_unfitted_with_equal_params(spec: SweepSpec, digits: Dataset) -> None:
    import keras

    est = make_estimator(spec, {**full_params(spec, {"model__dropout": 0.0}), "optimizer": "radam",
                                "optimizer__learning_rate": 0.01},
                         seed=3, callbacks=[keras.callbacks.TerminateOnNaN()])
    est.fit(digits.x, digits.y)
    copy = clone(est)
    assert type(copy) is SweeperClassifier
    assert not hasattr(copy, "model_") and not hasattr(copy, "history_") and not hasattr(copy, "classes_")
    assert hasattr(est, "model_")
    original, cloned = est.get_params(), copy.get_params()
    assert original.keys() == cloned.keys()
    assert cloned["model"] is original["model"]  # the builder function itself
    assert [type(c) for c in cloned["callbacks"]] == [type(c) for c in original["callbacks"]]  # deep-copied objects
    comparable = set(original) - {"model", "callbacks"}
    assert {k: cloned[k] for k in comparable} == {k: original[k] for k in comparable}
    assert cloned["optimizer"] == "radam" and cloned["model__units"] == 16
    copy.fit(digits.x, digits.y)  # and the clone trains on its own
    assert type(copy.model_.optimizer).__name__ == "RAdam"


def test_pickled_fitted_estimator_predicts_the_same(spec: SweepSpec, digits: Dataset) -> None:
    est = estimator(spec)
    est.fit(digits.x, digits.y)
    restored = pickle.loads(pickle.dumps(est))
    assert type(restored) is SweeperClassifier and restored.get_params()["optimizer"] == "adam"
    assert np.array_equal(restored.classes_, est.classes_)
    assert np.array_equal(restored.predict(digits.x), est.predict(digits.x))
    assert np.allclose(restored.predict_proba(digits.x), est.predict_proba(digits.x), atol=1e-6)


@pytest.mark.parametrize("name", ["adam", "radam"])
def test_optimizer_name_round_trips_through_get_and_set_params(spec: SweepSpec, name: str) -> None:
    est = estimator(spec, optimizer=name)
    params = est.get_params()
    assert params["optimizer"] == name and isinstance(params["optimizer"], str)
    est.set_params(**params)
    assert est.get_params()["optimizer"] == name
    assert clone(est).get_params()["optimizer"] == name


def test_lowercase_optimizer_name_compiles_the_keras_class(spec: SweepSpec, digits: Dataset) -> None:
    est = estimator(spec, optimizer="rmsprop", optimizer__learning_rate=0.005)
    est.fit(digits.x, digits.y)
    assert type(est.model_.optimizer).__name__ == "RMSprop"
    assert float(est.model_.optimizer.learning_rate) == pytest.approx(0.005)
    assert est.get_params()["optimizer"] == "rmsprop"  # still the name after compiling
    est.set_params(**est.get_params())
    assert est.get_params()["optimizer"] == "rmsprop"
