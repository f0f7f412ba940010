"""The early-stopping and restore rule, stated once (keras_mirror.EARLY_STOPPING): when Keras 3's
EarlyStopping stops a fit, and which epoch's weights a fit ends with. A Keras fit runs Keras's
own callback (train/callbacks.py); fused packs, which run no Keras fit, follow ``EarlyStop`` and
score ``scored_epoch`` (train/fused/trials.py). tests/train/test_keras_assumptions.py drives Keras's
callback and ``stop_and_keep`` over the same values: they agree on both epochs.

The rule: each epoch the wait grows by one, then an improvement on the best by more than
``min_delta`` (in the monitor's direction) makes it the best and resets the wait; else training
stops once the wait reaches ``patience``, never at the first epoch. With
``restore_best_weights`` the best epoch's weights are restored when training ends, stopped early
or not; ``keep_best`` restores the first epoch of the best val_accuracy (``keeps``: the rule
sweeper's KeepBest callback and fused packs both follow).
Keras compares ``value - min_delta`` with the best in float32, this rule in Python floats: with a
``min_delta`` that float32 rounds, a near-tie may go the other way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from sweeper.config.sections import Callbacks, EarlyStopping


def mode(monitor: str) -> str:
    """The direction a monitored metric improves in: "max" for accuracies, else "min"."""
    return "max" if "accuracy" in monitor else "min"


class EarlyStop:
    """Keras's EarlyStopping rule on one fit's logs, fed one epoch at a time."""

    def __init__(self, monitor: str, patience: int, min_delta: float, direction: str) -> None:
        self.monitor, self.patience, self.min_delta = monitor, patience, min_delta
        self.sign = 1.0 if direction == "max" else -1.0
        self.best: float | None = None
        self.best_epoch, self.wait = 0, 0

    @classmethod
    def of(cls, rule: EarlyStopping) -> EarlyStop:
        """The rule of the sweep's ``callbacks.early_stopping``."""
        return cls(rule.monitor, rule.patience, rule.min_delta, mode(rule.monitor))

    def stop(self, epoch: int, logs: dict[str, float]) -> bool:
        """Whether training stops after ``epoch``, whose logs are ``logs`` (no monitored value: no)."""
        current = logs.get(self.monitor)
        if current is None:
            return False
        self.wait += 1
        if self.best is None or self.sign * (current - self.sign * self.min_delta - self.best) > 0:
            self.best, self.best_epoch, self.wait = current, epoch, 0
            return False
        return self.wait >= self.patience and epoch > 0


KEEP_BEST_MONITOR = "val_accuracy"


def keeps(value: float | None, best: float) -> bool:
    """``keep_best``'s rule: an epoch's weights are kept when its val_accuracy beats every
    earlier epoch's (a tie keeps the first; a missing or NaN value is never kept)."""
    return value is not None and value > best


def kept_epoch(values: Sequence[float]) -> int | None:
    """The epoch whose weights ``keep_best`` ends a fit with (None: none was kept, the last stays)."""
    best, kept = -math.inf, None
    for epoch, value in enumerate(values):
        if keeps(value, best):
            best, kept = value, epoch
    return kept


def stop_and_keep(values: Sequence[float], patience: int, min_delta: float, direction: str,
                  restore_best: bool) -> tuple[int | None, int]:
    """Given a fit's monitored value at each epoch: the epoch it stops after (None: it runs
    them all) and the epoch whose weights it ends with."""
    rule, stopped = EarlyStop("value", patience, min_delta, direction), None
    for epoch, value in enumerate(values):
        if rule.stop(epoch, {"value": value}):
            stopped = epoch
            break
    ran = len(values) if stopped is None else stopped + 1
    return stopped, restored_epoch(rule, restore_best, ran - 1)


def restored_epoch(stopper: EarlyStop | None, restore_best: bool, last: int) -> int:
    """The epoch whose weights a fit that ran to epoch ``last`` ends with: the rule's best when
    it restores the best weights (Keras 3: stopped early or not), else the last."""
    return stopper.best_epoch if stopper is not None and restore_best else last


def scored_epoch(callbacks: Callbacks, history: dict[str, list[float]], stopper: EarlyStop | None) -> int:
    """The epoch whose weights a fit with the sweep's ``callbacks`` ends with, and is scored at:
    the last, the one ``keep_best`` restores, or the one ``restore_best_weights`` restores
    (``stopper``: the rule that ran on ``history``)."""
    last = len(history.get("val_loss", [])) - 1
    if callbacks.keep_best and history.get(KEEP_BEST_MONITOR):
        kept = kept_epoch(history[KEEP_BEST_MONITOR])
        return last if kept is None else kept
    restore = bool(callbacks.early_stopping and callbacks.early_stopping.restore_best_weights)
    return restored_epoch(stopper, restore, last)
