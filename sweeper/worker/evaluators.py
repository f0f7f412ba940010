"""Evaluators: how the worker loop turns claimed trials into results, the one seam where a new
kind of trial plugs in. The loop hands an evaluator a batch of entries that share a pack key
(None: each trains alone) and reads one outcome per entry: a TrialResult or plain numbers, or the
exception that ended it (``optuna.TrialPruned`` included). KeyboardInterrupt passes through.

- ``FunctionEvaluator``: a user's ``trial_function`` or AutoKeras; one call per trial.
- ``KerasEvaluator``: the zoo's and a user builder's scikeras fits, alone or, when the sweep
  fuses (``fuses``: the one place that decides it), as packs of one structure and batch size.

Nothing here imports TensorFlow until a trial trains.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from sweeper.config.params import NUMBERED_WIDTH
from sweeper.config.spec import SweepSpec
from sweeper.errors import SweeperError

EpochHook = Callable[[int, float], None]
TrialFunction = Callable[[SweepSpec, dict[str, Any], int, "EpochHook | None"], Any]


@dataclass
class Entry:
    """One claimed trial on its way through an evaluator."""

    params: dict[str, Any]  # full params: fixed settings and the searched values
    seed: int
    on_epoch: EpochHook | None  # a live trial's per-epoch hook (pruning)
    tag: str  # "trial-N": names its logs
    outcome: Any = None  # set by the evaluator


class Evaluator:
    """Trains trials one at a time; subclasses that pack override ``pack_key`` and ``pack_limit``."""

    def __init__(self, spec: SweepSpec) -> None:
        self.spec = spec

    def pack_key(self, params: dict[str, Any], seed: int) -> Any | None:
        """What trials must share to train in one pack; None: this one trains alone."""
        return None

    def pack_limit(self, key: Any | None = None) -> int:
        """How many trials one pack (of ``key``, when known) may hold; 1: no packs."""
        return 1

    def evaluate(self, entries: list[Entry], key: Any | None) -> None:
        """Set every entry's ``outcome``; ``key`` None: each alone, else one pack of that key."""
        for entry in entries:
            entry.outcome = self._one(entry)

    def _one(self, entry: Entry) -> Any:
        raise NotImplementedError


class FunctionEvaluator(Evaluator):
    """A trial function ``fn(spec, params, seed, on_epoch) -> TrialResult | float | list``."""

    def __init__(self, spec: SweepSpec, fn: TrialFunction) -> None:
        super().__init__(spec)
        self.fn = fn

    def _one(self, entry: Entry) -> Any:
        try:
            return self.fn(self.spec, entry.params, entry.seed, entry.on_epoch)
        except Exception as exc:  # the loop tells it: FAIL, or PRUNED for optuna.TrialPruned
            return exc


class KerasEvaluator(Evaluator):
    """scikeras fits on the sweep's dataset (loaded once), fused into packs when the sweep fuses."""

    def __init__(self, spec: SweepSpec) -> None:
        super().__init__(spec)
        self.fused = fuses(spec)

    def _dataset(self) -> Any:
        from sweeper.train.data import load_dataset
        from sweeper.train.runtime import configure_tensorflow

        configure_tensorflow()
        return load_dataset(self.spec.data)

    def pack_key(self, params: dict[str, Any], seed: int) -> Any | None:
        if not self.fused or any(k == "model__layers" or NUMBERED_WIDTH.fullmatch(k) for k in params):
            return None  # a pack's layer sequence is its family's template model's: another trains alone
        from sweeper.train.fused.trials import pack_key

        return pack_key(self.spec, params, seed)

    def pack_limit(self, key: Any | None = None) -> int:
        if not self.fused:
            return 1
        from sweeper.train.data import load_dataset
        from sweeper.train.fused.trials import pack_limit

        ds = load_dataset(self.spec.data)
        return pack_limit(self.spec, ds.x.shape[1:], len(ds.classes), key)

    def evaluate(self, entries: list[Entry], key: Any | None) -> None:
        ds = self._dataset()
        if key is None:
            from sweeper.train.trial import CURRENT_TRIAL, run_trial

            for entry in entries:
                token = CURRENT_TRIAL.set(entry.tag)
                try:
                    entry.outcome = run_trial(self.spec, ds, entry.params, entry.seed, entry.on_epoch)
                except Exception as exc:
                    entry.outcome = exc
                finally:
                    CURRENT_TRIAL.reset(token)
            return
        from sweeper.train.fused.trials import PackEntry, run_pack

        packed = [PackEntry(e.params, e.seed, e.on_epoch) for e in entries]
        run_pack(self.spec, ds, packed, key)
        for entry, done in zip(entries, packed):
            entry.outcome = done.outcome if done.outcome is not None else RuntimeError("no result")


def fuses(spec: SweepSpec) -> bool:
    """Whether this sweep's trials train in fused packs (the sweep file asks, and can have them)."""
    if spec.compute.fuse == "off" or spec.trial_function or spec.model.lower() == "autokeras":
        return False
    from sweeper.train.fused.trials import fuse_reason

    return fuse_reason(spec) is None


def for_spec(spec: SweepSpec) -> Evaluator:
    """The evaluator a sweep file names: its trial_function, AutoKeras, or Keras fits."""
    ref = spec.trial_function
    if not ref and spec.model.lower() == "autokeras":
        from sweeper.train import automl

        return FunctionEvaluator(spec, automl.evaluator())  # refuses if the extra is missing
    if not ref:
        return KerasEvaluator(spec)
    module, _, name = ref.partition(":")
    try:
        return FunctionEvaluator(spec, getattr(importlib.import_module(module), name))
    except (ImportError, AttributeError) as exc:
        raise SweeperError(f"trial_function {ref!r}: cannot load ({exc})") from None


def as_evaluator(spec: SweepSpec, given: Evaluator | TrialFunction | None) -> Evaluator:
    """``given`` as an evaluator: None is the sweep's own, a plain function a trial function."""
    if given is None:
        return for_spec(spec)
    if isinstance(given, Evaluator):
        return given
    return FunctionEvaluator(spec, given)
