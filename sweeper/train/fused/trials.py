"""Trials of one pack: several configurations that share a graph structure and batch size train
as one fused model (fit.py), each still scored exactly as ``run_trial`` scores a trial.

A trial's fits (one per split x repeat, each with ``fit_seed``) become members of the pack on
their own rows of the dataset, so k-fold folds of one configuration share a pack too. The sweep's
callbacks act per member through ``fit_fused``'s ``should_stop``: early stopping with Keras's
rule, ``keep_best`` / ``restore_best_weights`` by scoring the epoch whose weights Keras would
have restored (both from train/early_stopping.py), and the live pruning hook. ``fuse_reason``
says once why a sweep cannot be fused.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from sweeper.config.spec import SweepSpec
from sweeper.config.values import (
    MAX_PACK,  # beyond it a stacked step stops getting cheaper per member
)
from sweeper.train.data import Dataset, splits
from sweeper.train.early_stopping import EarlyStop, scored_epoch
from sweeper.train.fit import EpochHook, fit_seed, metric_key
from sweeper.train.fused.fit import FAMILIES, FusedMember, FusedResult, fit_fused, member_from_params
from sweeper.train.fused.init import keras_model
from sweeper.train.fused.sizing import pack_size
from sweeper.train.trial import FitRecord, TrainedModel, TrialResult, save_temp


def fuse_reason(spec: SweepSpec) -> str | None:
    """Why this sweep's trials cannot train fused (None: they can), in words for the user."""
    if spec.trial_function:
        return "trials run a trial_function"
    if spec.model.lower() not in FAMILIES:
        return f"model {spec.model!r} has no fused form (fused: {', '.join(FAMILIES)})"
    if spec.augmentation.active:
        return "augmentation layers are not fused"
    if spec.callbacks.reduce_lr is not None:
        return "reduce_lr changes one trial's rate from inside Keras's fit, which a pack does not run"
    if spec.callbacks.tensorboard:
        return "tensorboard logs are written per Keras fit"
    if spec.compute.mixed_precision:
        return "mixed precision is not fused"
    return None


def pack_limit(spec: SweepSpec, input_shape: Sequence[int], n_classes: int, key: Any | None = None) -> int:
    """How many trials one pack may hold: 1 (unfused) for ``fuse: off`` or a sweep that cannot
    be fused, the sweep file's K, or for ``auto`` the fits the model and device allow
    (sizing.py) divided by each trial's fits (folds x repeats), for the pack ``key``
    (by default the structure the fixed settings give)."""
    setting = spec.compute.fuse
    if setting == "off" or fuse_reason(spec) is not None:
        return 1
    if setting != "auto":
        return max(1, min(int(setting), MAX_PACK))
    key = key or pack_key(spec, dict(spec.fixed), 0)
    if key is None:  # the fixed settings alone do not say the structure: size by the family's default
        key = pack_key(spec, {}, 0)
    if key is None:
        return 1
    fits = (spec.kfold or 1) * spec.repeats
    return max(1, min(pack_size(key[0], key[1], tuple(input_shape), n_classes) // fits, MAX_PACK))


def _member(spec: SweepSpec, params: dict[str, Any], seed: int) -> tuple[Any, FusedMember] | None:
    found = member_from_params(params, seed, model=spec.model.lower())
    if found is not None:
        found[1].keras_order = spec.seeds_as_scikeras
    return found


def pack_key(spec: SweepSpec, params: dict[str, Any], seed: int) -> Any | None:
    """What trials must share to train in one pack (structure, batch size), or None when these
    params hold something a pack cannot vary per member (they train alone)."""
    found = _member(spec, params, seed)
    return None if found is None else found[0]


@dataclass
class PackEntry:
    """One trial of a pack: its full params, its seed and its live epoch hook (pruning)."""

    params: dict[str, Any]
    seed: int
    on_epoch: EpochHook | None = None
    outcome: TrialResult | BaseException | None = None  # set by run_pack
    members: list[int] = field(default_factory=list)  # indices of its fits in the pack


def _stopper(spec: SweepSpec) -> EarlyStop | None:
    return EarlyStop.of(spec.callbacks.early_stopping) if spec.callbacks.early_stopping else None


def _but_epochs(params: dict[str, Any]) -> str:
    """A configuration's identity apart from its epochs (its params as JSON, epochs left out):
    fits of one seed, split and repeat with the same one train the same steps."""
    return json.dumps({k: v for k, v in params.items() if k != "epochs"}, sort_keys=True, default=str)


@dataclass
class _Rider:
    """One fit of a trial (split x repeat) riding on a pack member: the member trains the longest
    of the fits that differ only in epochs (the same seed: space.trial_seed), and each fit ends at
    its own epoch count, early stop or pruning, with the member's history up to there."""

    entry: int
    member: int
    epochs: int
    stopper: EarlyStop | None
    split: int = 0
    repeat: int = 0
    end: int | None = None  # the last epoch it took (None: still going)
    fit: int = 0  # which of its entry's fits it is (the order TrialResult.from_fits averages in)


def _ride_on(members: list[FusedMember], shared: dict[Any, int], key: Any, member: FusedMember) -> int:
    """The index of the member that trains ``member``'s fit: one already there that differs only
    in epochs (its epochs raised to the longer), or ``member`` appended."""
    if key in shared:
        at = shared[key]
        members[at].epochs = max(members[at].epochs, member.epochs)
        return at
    shared[key] = len(members)
    members.append(member)
    return shared[key]


def run_pack(spec: SweepSpec, ds: Dataset, entries: list[PackEntry], key: Any) -> float:
    """Train every entry's fits as one pack and set each entry's ``outcome`` (a TrialResult, or
    the exception that ended it: ``optuna.TrialPruned`` from its hook, a TrialError). Fits that
    differ only in epochs train once. Returns the pack's wall time."""
    from sweeper.errors import TrialError

    structure, batch_size = key
    folds = splits(spec, ds)
    members: list[FusedMember] = []
    riders: list[_Rider] = []
    shared: dict[Any, int] = {}  # (params but epochs, seed, split, repeat) -> member training it
    for e, entry in enumerate(entries):
        same = _but_epochs(entry.params)
        for i, (tr, va) in enumerate(folds):
            for r in range(spec.repeats):
                seed = fit_seed(spec, entry.seed, i, r)
                found = _member(spec, entry.params, seed)
                if found is None or found[0] != key:
                    raise ValueError("a pack holds trials of one structure and batch size only")
                member = found[1]
                member.train_indices, member.val_indices = np.asarray(tr), np.asarray(va)
                at = _ride_on(members, shared, (same, seed, i, r), member)
                riders.append(_Rider(e, at, member.epochs, _stopper(spec), i, r, fit=len(entry.members)))
                entry.members.append(len(riders) - 1)
    on_member: list[list[_Rider]] = [[] for _ in members]
    for rider in riders:
        on_member[rider.member].append(rider)
    watched = metric_key(spec)
    epoch_values: dict[tuple[int, int], list[float | None]] = {}  # (entry, epoch) -> each of its fits' value

    def report(rider: _Rider, epoch: int, value: float) -> None:
        """The entry's hook, with the mean over its fits of the epoch once every fit reached it."""
        entry = entries[rider.entry]
        values = epoch_values.setdefault((rider.entry, epoch), [None] * len(entry.members))
        values[rider.fit] = value
        if all(v is not None for v in values):
            del epoch_values[(rider.entry, epoch)]
            entry.on_epoch(epoch, float(np.mean(values)))  # type: ignore[misc, arg-type]

    def rider_ends(rider: _Rider, epoch: int, logs: dict[str, float]) -> bool:
        entry = entries[rider.entry]
        if entry.outcome is not None:
            return True  # pruned (or failed) through another of its fits
        if entry.on_epoch is not None and watched in logs:
            try:
                report(rider, epoch, float(logs[watched]))
            except Exception as exc:  # optuna.TrialPruned: this trial is done, the pack goes on
                entry.outcome = exc
                return True
        stopped = rider.stopper is not None and rider.stopper.stop(epoch, logs)
        return stopped or epoch + 1 >= rider.epochs

    def should_stop(i: int, epoch: int, logs: dict[str, float]) -> bool:
        going = False
        for rider in on_member[i]:
            if rider.end is None:
                if rider_ends(rider, epoch, logs):
                    rider.end = epoch
                else:
                    going = True
        return not going  # frozen once every fit it trains has ended

    # Every pack of the sweep traces its steps for the most fits a pack holds (one trace for all).
    capacity = pack_limit(spec, ds.x.shape[1:], len(ds.classes), key) * (spec.kfold or 1) * spec.repeats
    results = fit_fused(members, ds.x, ds.y, None, structure=structure, batch_size=batch_size,
                              should_stop=should_stop, n_classes=len(ds.classes),
                              jit_compile=spec.compute.jit_compile, capacity=capacity)
    pack_time = results[0].fit_time if results else 0.0
    fits = [_rider_result(rider, results[rider.member]) for rider in riders]
    work_done = [f.epochs_run * len(members[rider.member].train_indices) for f, rider in zip(fits, riders)]
    total_work = max(sum(work_done), 1)
    n_params = _n_params(structure, members[0], ds)
    models: list[TrainedModel] = []  # the fits' models of the trial being recorded
    try:
        for e, entry in enumerate(entries):
            if entry.outcome is not None:
                continue
            own = [fits[v] for v in entry.members]
            errors = [f.error for f in own if f.error]
            if errors:
                entry.outcome = TrialError(errors[0])
                continue
            records, models = [], []
            facts = {"optimizer": entry.params.get("optimizer", "adam"),
                     "fused": {"pack_trials": len(entries), "pack_fits": len(members), "batch_size": batch_size}}
            for v, f in zip(entry.members, own):
                at = scored_epoch(spec.callbacks, f.history, riders[v].stopper)
                records.append(FitRecord(
                    score=f.history[watched][at], val_accuracy=f.history["val_accuracy"][at],
                    val_loss=f.history["val_loss"][at], train_accuracy=f.history["accuracy"][-1],
                    # The pack's time shared out by the work each fit stands for (epochs x training rows).
                    fit_time=pack_time * work_done[v] / total_work, epochs_run=f.epochs_run, n_params=n_params,
                    curve=f.history[watched], facts=facts,
                    latency_ms=_latency(spec, structure, members[riders[v].member], f, ds) if spec.measures_latency else None))
                if spec.artifacts.active:
                    models.append(_trained_model(spec, ds, structure, entry.params, members[riders[v].member],
                                                 results[riders[v].member], at, riders[v]))
            entry.outcome = TrialResult.from_fits(records)
            entry.outcome.models = models
    except BaseException:  # a model that could not be written: none of the pack's files stay behind
        for entry in entries:
            models += getattr(entry.outcome, "models", None) or []
        for m in models:
            m.discard()
        raise
    for entry in entries:
        if isinstance(entry.outcome, TrialResult) and not all(math.isfinite(s) for s in entry.outcome.split_scores):
            for m in entry.outcome.models:
                m.discard()
            entry.outcome = TrialError("the validation score is not finite")
    return pack_time


def _trained_model(spec: SweepSpec, ds: Dataset, structure: Any, params: dict[str, Any], member: FusedMember,
                   result: FusedResult, at: int, rider: _Rider) -> TrainedModel:
    """A fit's model as the standalone Keras model its member stands for: with the member's
    weights when they are those it was scored with (the scored epoch is the member's last), else
    (keep_best, restore_best_weights, a shorter fit riding on a longer one) made when the trial is
    kept, by training it again as a pack of one (the same computation: ``refit_member``)."""
    if at == result.epochs_run - 1:
        model = keras_model(structure, member, ds.x.shape[1:], len(ds.classes))
        model.set_weights(result.weights)
        return save_temp(model, rider.split, rider.repeat)
    rows = (member.train_indices, member.val_indices)
    return TrainedModel(rider.split, rider.repeat,
                        make=lambda: refit_member(spec, ds, params, member.seed, *rows).model)


def _rider_result(rider: _Rider, result: FusedResult) -> FusedResult:
    """A fit's share of its member's result: the history up to the epoch it ended at (the weights,
    used for latency only, are the member's last: the same model)."""
    if rider.end is None:  # the member stopped first: its loss was not finite
        return result
    history = {k: v[:rider.end + 1] for k, v in result.history.items()}
    return replace(result, history=history, epochs_run=rider.end + 1, error=None, orders=result.orders[:rider.end + 1])


def _latency(spec: SweepSpec, structure: Any, member: FusedMember, result: FusedResult,
             ds: Dataset) -> float:
    """Inference latency of the member as the standalone Keras model it stands for."""
    from sweeper.train.latency import latency_ms

    model = keras_model(structure, member, ds.x.shape[1:], len(ds.classes))
    model.set_weights(result.weights)
    return latency_ms(model, ds.x[member.val_indices], spec.latency)


_N_PARAMS: dict[Any, int] = {}


def _n_params(structure: Any, member: FusedMember, ds: Dataset) -> int:
    """The standalone model's parameter count (what an unfused trial stores), once per structure."""
    key = (structure, ds.x.shape[1:], len(ds.classes))
    if key not in _N_PARAMS:
        _N_PARAMS[key] = int(keras_model(structure, member, ds.x.shape[1:], len(ds.classes)).count_params())
    return _N_PARAMS[key]


@dataclass
class MemberRefit:
    """A fused trial's fit trained again as a pack of one: the same computation as in its pack."""

    model: Any  # the standalone keras.Model with the weights the trial was scored with
    initial: Any  # the same model with its initial weights
    history: dict[str, list[float]]
    score: float | None  # the objective metric on the validation rows, as the trial stored it
    n_params: int


def refit_member(spec: SweepSpec, ds: Dataset, params: dict[str, Any], seed: int,
                 train_rows: np.ndarray | None, val_rows: np.ndarray | None, epochs: int | None = None) -> MemberRefit:
    """Train one fit of a fused trial alone (rows of ``ds``; ``val_rows`` None: no validation, for
    ``epochs``), with the callbacks acting as in its pack; the model holds the weights of the epoch
    it was scored at (keep_best / restore_best_weights: trained again up to that epoch)."""
    from sweeper.errors import TrialError

    found = _member(spec, params, seed)
    if found is None:
        raise TrialError("this trial's params have no fused form")
    (structure, batch_size), member = found
    if epochs is not None:
        member.epochs = int(epochs)
    member.train_indices = None if train_rows is None else np.asarray(train_rows)
    member.val_indices = None if val_rows is None else np.asarray(val_rows)
    stopper = _stopper(spec) if val_rows is not None else None

    def fit(m: FusedMember, stop: EarlyStop | None) -> FusedResult:
        hook = None if stop is None else (lambda i, epoch, logs: stop.stop(epoch, logs))
        result = fit_fused([m], ds.x, ds.y, None, structure=structure, batch_size=batch_size, should_stop=hook,
                                 n_classes=len(ds.classes), jit_compile=spec.compute.jit_compile)[0]
        if result.error:
            raise TrialError(result.error)
        return result

    result = fit(member, stopper)
    score, history = None, result.history
    if val_rows is not None:
        at = scored_epoch(spec.callbacks, history, stopper)
        score = history[metric_key(spec)][at]
        if at < result.epochs_run - 1:  # the kept epoch's weights: the same run, stopped there
            short = replace(member, epochs=at + 1)
            result = fit(short, None)
    import keras

    keras.utils.set_random_seed(member.seed)  # the initial weights fit_fused starts from
    initial = keras_model(structure, member, ds.x.shape[1:], len(ds.classes))
    model = keras_model(structure, member, ds.x.shape[1:], len(ds.classes))
    model.set_weights(result.weights)
    return MemberRefit(model, initial, history, score, int(model.count_params()))


def is_fused(metrics: dict[str, Any] | None) -> bool:
    """Whether a stored trial trained in a pack (its refits then train as a pack of one)."""
    return bool(((metrics or {}).get("model") or {}).get("fused"))
