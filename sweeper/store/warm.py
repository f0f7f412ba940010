"""Warm starts (``warm_start:``): a new study starts with the completed trials of an earlier one
(a study of any store, or the rows of a ``sweeper export --format csv`` file) whose params lie in
its space, added once as COMPLETE trials marked ``warm_start``, so its sampler learns from them and
a grid does not train their points again.

Everything is read and checked before the study exists (``gather``): a missing source, an
incomparable definition, or a file without the space's columns is one line and nothing is made.
``add`` puts the trials in and then marks the study (``WARM_DONE_ATTR``); a study made with a warm
start and not marked (its creator stopped in between) is mended by the next ``run`` or ``resume``,
which adds only the trials not added yet.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from sweeper.config import conditions
from sweeper.config.growth import first_difference
from sweeper.config.params import ParamSpec
from sweeper.config.spec import SweepSpec
from sweeper.errors import StudyError
from sweeper.search.strategy import strategy_for
from sweeper.store import optuna_internals as oi
from sweeper.store.keys import (
    DUPLICATE_OF_ATTR,
    METRICS_ATTR,
    SCALAR_METRICS,
    WARM_ATTR,
    WARM_DONE_ATTR,
)


@dataclass
class Found:
    """What a warm start adds: its trials, ready for ``study.add_trial``, and how many completed
    ones lay outside the new space."""

    label: str
    trials: list[FrozenTrial] = field(default_factory=list)
    outside: int = 0

    def text(self) -> str:
        return (f"warm start: {len(self.trials)} trials from {self.label} "
                f"({self.outside} outside the space, not added)")


def pending(study: optuna.Study, spec: SweepSpec) -> bool:
    """The study's definition asks for a warm start that is not marked done."""
    return spec.warm_start is not None and WARM_DONE_ATTR not in study.user_attrs


def gather(spec: SweepSpec, storage: BaseStorage) -> Found:
    """The trials ``spec.warm_start`` names, checked; one-line ``StudyError`` otherwise."""
    ws = spec.warm_start
    assert ws is not None
    if ws.csv is not None:
        return _from_csv(spec, ws.csv)
    return _from_study(spec, ws.study or "", ws.storage, storage)


def add(study: optuna.Study, found: Found) -> int:
    """Add the trials not added yet (a mended warm start skips those already in), then mark the
    study; returns how many were added now."""
    have = {_mark(t.user_attrs[WARM_ATTR]) for t in study.get_trials(deepcopy=False) if WARM_ATTR in t.user_attrs}
    added = 0
    for t in found.trials:
        if _mark(t.user_attrs[WARM_ATTR]) not in have:
            study.add_trial(t)
            added += 1
    study.set_user_attr(WARM_DONE_ATTR, {"source": found.label, "trials": len(found.trials),
                                         "outside": found.outside})
    return added


def finish(study: optuna.Study, spec: SweepSpec, storage: BaseStorage, say: Callable[[str], None] | None) -> None:
    """Mend a warm start its study's creator did not finish (``run`` and ``resume``)."""
    if pending(study, spec):
        found = gather(spec, storage)
        add(study, found)
        if say is not None:
            say(found.text())


def summary(study: optuna.Study) -> str | None:
    """The study's warm start in one line, for show and the report (None: it had none)."""
    done = study.user_attrs.get(WARM_DONE_ATTR)
    if not isinstance(done, dict):
        return None
    return f"{done.get('trials')} trials from {done.get('source')} ({done.get('outside')} outside the space, not added)"


def _mark(attr: Any) -> str:
    return json.dumps(attr, sort_keys=True, default=str)


# --------------------------------------------------------------------------- from a study
def _from_study(spec: SweepSpec, name: str, url: str | None, own: BaseStorage) -> Found:
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import load, seed_rule

    where = f"warm_start.study {name!r}"
    if name == spec.name and url is None:
        raise StudyError(f"{where}: is this sweep's own study (name an earlier study)")
    try:
        src = own if url is None else make_storage(url, heartbeat=None, must_exist=True, readonly=True)
        old, old_spec = load(name, src)
    except StudyError as exc:
        raise StudyError(f"{where}: {exc}") from None
    differs = first_difference(old_spec, spec)
    if differs:
        key, a, b = differs
        raise StudyError(f"{where}: {key} differs ({a} there, {b} here); its results would not be comparable")
    if seed_rule(old) != spec.seed_rule:
        raise StudyError(f"{where}: its trials were seeded by rule {seed_rule(old)}, this sweep's by "
                         f"{spec.seed_rule}; its results would not be reproducible here")
    dists = strategy_for(spec).distributions()
    found = Found(f"study {name}")
    constraints_key = oi.constraints_key()
    for t in old.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.values is None or t.user_attrs.get(DUPLICATE_OF_ATTR) is not None:
            continue  # a repeat of another trial's point: its twin is added
        params = _inside(spec, t.params)
        if params is None:
            found.outside += 1
            continue
        attrs = {k: v for k, v in t.user_attrs.items() if k == METRICS_ATTR or k in SCALAR_METRICS}
        attrs[WARM_ATTR] = {"study": name, "number": t.number}
        system = {constraints_key: t.system_attrs[constraints_key]} if constraints_key in t.system_attrs else None
        found.trials.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=list(t.values), params=params,
            distributions={k: dists[k] for k in params}, user_attrs=attrs, system_attrs=system,
            intermediate_values=dict(t.intermediate_values)))
    return found


def _inside(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any] | None:
    """``params`` as the new space's values (a list's own value for an equal one), or None when
    they are not a point of it (another parameter set, a value off a list, outside a range)."""
    if not set(params) <= set(spec.params):
        return None
    out = {}
    for key, v in params.items():
        value = _value_in(spec.params[key], v)
        if value is _OUT:
            return None
        out[key] = value
    return out if conditions.is_point(spec.params, out) else None  # exactly the params that exist there


_OUT = object()


def _value_in(p: ParamSpec, v: Any) -> Any:
    if p.values is not None:
        for choice in p.values:
            if isinstance(choice, bool) == isinstance(v, bool) and choice == v and \
                    (isinstance(choice, (int, float)) or type(choice) is type(v)):
                return choice
        return _OUT
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return _OUT
    if p.low is None or p.high is None or not p.low <= v <= p.high:
        return _OUT
    if p.is_int:
        return int(v) if v == int(v) and (not p.step or (int(v) - p.low) % p.step == 0) else _OUT
    if p.step:
        k = (v - p.low) / p.step
        return float(v) if abs(k - round(k)) < 1e-8 else _OUT
    return float(v)


# --------------------------------------------------------------------------- from a CSV export
def _from_csv(spec: SweepSpec, path: str) -> Found:
    """Rows of ``sweeper export --format csv``: ``param_*`` columns (exactly the space's) and the
    objective's (``mean_test_score``; several objectives: ``value_NAME`` each). Only rows whose
    ``state`` is complete (an ``--all`` export) and that repeat no other (``duplicate_of``)."""
    where = f"warm_start.csv {path}"
    file = _locate(spec, path)
    try:
        with open(file, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise StudyError(f"{where}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    columns = {c.removeprefix("param_") for c in header if c.startswith("param_")}
    missing, extra = sorted(set(spec.params) - columns), sorted(columns - set(spec.params))
    if missing or extra:
        what = f"has no column param_{missing[0]}" if missing else \
            f"has column param_{extra[0]}, which this sweep does not search"
        raise StudyError(f"{where}: {what} (its param_ columns must be the sweep's params)")
    objectives = ["mean_test_score"] if not spec.multi_objective else [f"value_{n}" for n in spec.objective_names]
    for col in objectives:
        if col not in header:
            raise StudyError(f"{where}: has no column {col} (the sweep's objective"
                             f"{'s' if spec.multi_objective else ''}: {', '.join(spec.objective_names)})")
    dists = strategy_for(spec).distributions()
    found = Found(path)
    for i, row in enumerate(rows, start=1):
        if row.get("state", "complete") != "complete" or (row.get("duplicate_of") or "").strip():
            continue
        values = []
        for col in objectives:
            try:
                values.append(float(row[col]))
            except (TypeError, ValueError):
                raise StudyError(f"{where}: row {i}: {col} {row[col]!r} is not a number") from None
        # An empty cell is a parameter absent there (a condition that failed; export writes it so).
        params = {k: _cell(spec.params[k], row[f"param_{k}"]) for k in spec.params if (row[f"param_{k}"] or "").strip()}
        if any(v is _OUT for v in params.values()) or not conditions.is_point(spec.params, params) \
                or not all(math.isfinite(v) for v in values):
            found.outside += 1
            continue
        found.trials.append(optuna.trial.create_trial(
            state=TrialState.COMPLETE, values=values, params=params, distributions={k: dists[k] for k in params},
            user_attrs={WARM_ATTR: {"csv": path, "row": i}}))
    return found


def _locate(spec: SweepSpec, path: str) -> str:
    """A relative path from the working folder, else from the sweep file's folder."""
    if os.path.isabs(path) or os.path.exists(path) or not spec.source:
        return path
    beside = os.path.join(os.path.dirname(os.path.abspath(spec.source)), path)
    return beside if os.path.exists(beside) else path


def _cell(p: ParamSpec, text: str | None) -> Any:
    """A CSV cell as the parameter's value (a list's value is matched as the export wrote it)."""
    text = (text or "").strip()
    if p.values is not None:
        for choice in p.values:
            if str(choice) == text:
                return choice
        try:
            number = float(text)
        except ValueError:
            return _OUT
        return _value_in(p, int(number) if number.is_integer() and p.is_int else number)
    try:
        number = float(text)
    except ValueError:
        return _OUT
    return _value_in(p, int(number) if p.is_int and number.is_integer() else number)
