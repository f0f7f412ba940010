"""Create, load and open sweeper studies: an Optuna study plus the sweep definition stored with it."""

from __future__ import annotations

import json

import optuna
from optuna.storages import BaseStorage

from sweeper.config.spec import SweepSpec, from_stored
from sweeper.errors import StudyError
from sweeper.search.strategy import make_pruner, strategy_for
from sweeper.store.keys import SPEC_ATTR
from sweeper.store.storage import study_lock
from sweeper.store.trials import queue_points


def create_or_load(spec: SweepSpec, storage: BaseStorage) -> optuna.Study:
    """Create the study for a sweep (grid points queued once), or load it when the same sweep
    already exists. A different sweep under the same name is refused, nothing changed."""
    with study_lock(storage, spec.name):
        return _create_or_load(spec, storage)


def _create_or_load(spec: SweepSpec, storage: BaseStorage) -> optuna.Study:
    sampler, pruner = strategy_for(spec).sampler(), make_pruner(spec.pruner)
    try:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=spec.direction,
                                    sampler=sampler, pruner=pruner)
        study.set_user_attr(SPEC_ATTR, spec.raw)
    else:
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is None:
            # Created, but its creator stopped before storing the definition (a kill between the
            # two writes): finish creating it, unless it holds trials of some other program.
            if study.get_trials(deepcopy=False) or study.direction.name.lower() != spec.direction:
                raise StudyError(f"study {spec.name!r} exists but was not made by sweeper")
            study.set_user_attr(SPEC_ATTR, spec.raw)
            stored = spec.raw
        if json.dumps(stored, sort_keys=True, default=str) != json.dumps(spec.raw, sort_keys=True, default=str):
            raise StudyError(
                f"study {spec.name!r} already exists with a different definition; "
                "change 'name' in the sweep file, or 'sweeper resume' it"
            )
    queue_points(study, spec)
    return study


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
    study.sampler = strategy_for(spec).sampler(salt)
    study.pruner = make_pruner(spec.pruner)
    return study, spec
