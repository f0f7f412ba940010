"""Create, load and open sweeper studies: an Optuna study plus the sweep definition stored with it."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import optuna
from optuna.storages import BaseStorage

from sweeper.config.growth import Refused, check_growth
from sweeper.config.spec import SweepSpec, from_stored
from sweeper.errors import StudyError
from sweeper.search.strategy import make_pruner, strategy_for
from sweeper.store import warm
from sweeper.store.keys import REVISIONS_ATTR, SEED_RULE_ATTR, SPEC_ATTR
from sweeper.store.pareto import constraints_func
from sweeper.store.stopping import LAST_COMPLETE
from sweeper.store.storage import study_lock
from sweeper.store.trials import queue_points


def create_or_load(spec: SweepSpec, storage: BaseStorage, say: Callable[[str], None] | None = None) -> optuna.Study:
    """Create the study for a sweep (its warm start added, then grid points queued once), or load
    it when the same sweep already exists. A different sweep under the same name is refused,
    nothing changed. ``say``: where the warm start's one line goes."""
    with study_lock(storage, spec.name):
        return _create_or_load(spec, storage, say)


def _create_or_load(spec: SweepSpec, storage: BaseStorage, say: Callable[[str], None] | None) -> optuna.Study:
    sampler, pruner = strategy_for(spec).sampler(0, constraints_func(spec)), make_pruner(spec.pruner)
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        found = warm.gather(spec, storage) if spec.warm_start else None  # checked before anything is made
        study = optuna.create_study(study_name=spec.name, storage=storage, directions=spec.directions,
                                    sampler=sampler, pruner=pruner)
        study.set_user_attr(SEED_RULE_ATTR, spec.seed_rule)  # before the definition: see seed_rule()
        study.set_user_attr(SPEC_ATTR, spec.raw)
        _name_objective(study, spec)
        if found is not None:
            warm.add(study, found)
            if say is not None:
                say(found.text())
    else:
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is None:
            # Created, but its creator stopped before storing the definition (a kill between the
            # two writes): finish creating it, unless it holds trials of some other program.
            if study.get_trials(deepcopy=False) or [d.name.lower() for d in study.directions] != spec.directions:
                raise StudyError(f"study {spec.name!r} exists but was not made by sweeper")
            if SEED_RULE_ATTR not in study.user_attrs:
                study.set_user_attr(SEED_RULE_ATTR, spec.seed_rule)
            study.set_user_attr(SPEC_ATTR, spec.raw)
            stored = spec.raw
        if _canonical(stored) != _canonical(spec.raw):
            grow(study, from_stored(stored, spec.name), spec)
        warm.finish(study, spec, storage, say)  # its creator stopped before the warm start was marked
    spec.seed_rule = seed_rule(study)
    queue_points(study, spec)
    return study


def seed_rule(study: optuna.Study) -> int:
    """The seed rule a study's trials were made with: stored when it was made, before its
    definition, so a definition without one is from a study older than the rule (1)."""
    return int(study.user_attrs.get(SEED_RULE_ATTR, 1))


def with_trials(study: optuna.Study, spec: SweepSpec, trials: int) -> SweepSpec:
    """``spec`` with a budget of ``trials``, stored as the study's definition (``grow``'s rules)."""
    bigger = from_stored({**spec.raw, "trials": trials}, spec.name)
    grow(study, spec, bigger)
    bigger.seed_rule = spec.seed_rule
    return bigger


def _canonical(raw: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in raw.items() if k != "storage"}, sort_keys=True, default=str)


def _name_objective(study: optuna.Study, spec: SweepSpec) -> None:
    """Name the objectives (optuna-dashboard shows 'accuracy', not 'Objective 0')."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental in Optuna
        study.set_metric_names(spec.objective_names)


def grow(study: optuna.Study, old: SweepSpec, new: SweepSpec) -> list[str]:
    """Store ``new`` as the study's definition when it only widens ``old``: the old definition is
    kept as a revision with the trial number where the new one starts and the last completion
    time before it (where a stop rule's count starts: store/stopping.py). One-line ``StudyError``
    naming the key otherwise; nothing is stored then."""
    try:
        changes = check_growth(old, new)
        _check_distributions(study, new)
    except Refused as exc:
        raise StudyError(f"study {new.name!r} exists with another definition: {exc}") from None
    revisions = list(study.user_attrs.get(REVISIONS_ATTR) or [])
    trials = study.get_trials(deepcopy=False)
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    revisions.append({"first_trial": len(trials), "changes": changes, "at": time.strftime("%Y-%m-%d %H:%M:%S"),
                      LAST_COMPLETE: max(ends).isoformat() if ends else None, "previous": old.raw})
    study.set_user_attr(REVISIONS_ATTR, revisions)
    study.set_user_attr(SPEC_ATTR, new.raw)
    study.sampler = strategy_for(new).sampler(0, constraints_func(new))
    study.pruner = make_pruner(new.pruner)
    return changes



def _check_distributions(study: optuna.Study, new: SweepSpec) -> None:
    """Optuna fixes a categorical parameter's choices (and a range's kind and log scale) for the
    life of a study: a change it would refuse at the first new trial is refused here instead."""
    from optuna.distributions import check_distribution_compatibility

    wanted = strategy_for(new).distributions()
    for t in study.get_trials(deepcopy=False):
        for name, dist in list(t.distributions.items()):
            if name in wanted:
                try:
                    check_distribution_compatibility(dist, wanted[name])
                except ValueError:
                    raise Refused(f"params.{name}: its values cannot change in this study (Optuna fixes "
                                  f"{type(dist).__name__} {_brief(dist)} for it); give the sweep a new name") from None
                del wanted[name]
        if not wanted:
            return


def _brief(dist: Any) -> str:
    choices = getattr(dist, "choices", None)
    return repr(list(choices)) if choices is not None else f"[{dist.low}, {dist.high}]"


def load(name: str, storage: BaseStorage, salt: int = 0) -> tuple[optuna.Study, SweepSpec]:
    """Load a sweeper study and the sweep definition stored with it (no data file or model module
    needed: the definition was validated when the study was made)."""
    try:
        storage.get_study_id_from_name(name)  # one query, not a scan of every study's trials
    except KeyError:
        try:
            known = sorted(s.study_name for s in storage.get_all_studies())
        except Exception:
            known = []
        raise StudyError(f"no study named {name!r} in this store (studies: {', '.join(known) or 'none'})") from None
    except Exception as exc:
        raise StudyError(f"cannot read the store ({str(exc).splitlines()[0]})") from None
    study = optuna.load_study(study_name=name, storage=storage, pruner=optuna.pruners.NopPruner())
    raw = study.user_attrs.get(SPEC_ATTR)
    if raw is None:
        if not study.get_trials(deepcopy=False):
            raise StudyError(f"study {name!r} was left half-made (its creator stopped before storing the sweep "
                             "definition); finish it with: sweeper run SWEEP_FILE")
        raise StudyError(f"study {name!r} was not made by sweeper (no sweep definition stored)")
    spec = from_stored(raw, name)
    spec.seed_rule = seed_rule(study)
    study.sampler = strategy_for(spec).sampler(salt, constraints_func(spec))
    study.pruner = make_pruner(spec.pruner)
    return study, spec
