"""sweeper: hyperparameter sweeps for Keras image classifiers.

Public surface (imported lazily; importing ``sweeper`` loads neither TensorFlow nor Optuna):
``run``, ``resume``, ``load`` (a ``Sweep``: results as a DataFrame, best, plot, report),
``load_spec``, ``spec_from_dict``, ``open_study``, ``run_sweep``, ``make_estimator``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "resume", "load", "Sweep", "load_spec", "spec_from_dict", "open_study", "run_sweep",
           "make_estimator"]


def __getattr__(name: str) -> Any:
    if name in ("load_spec", "spec_from_dict"):
        from sweeper.config import spec

        return getattr(spec, name)
    if name in ("run", "resume", "load", "Sweep", "open_study", "run_sweep"):
        from sweeper import api

        return getattr(api, name)
    if name == "make_estimator":
        from sweeper.train.estimator import make_estimator

        return make_estimator
    raise AttributeError(name)
