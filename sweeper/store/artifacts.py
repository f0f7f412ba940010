"""Kept models (``artifacts: {keep: K}``): the store a study's trained models go to (a folder or
``s3://BUCKET/PREFIX``: store/artifact_stores.py), the trials whose models it keeps, and their
files, through Optuna's artifact stores.

A model reaches the store as a finished temporary .keras file (train/trial.py ``TrainedModel``).
``upload`` runs while its trial still runs (Optuna takes no attr on a finished trial), in an order
a kill cannot break: the ids about to be written are stored on the trial first
(``UPLOADING_ATTR``), then each file is written whole (never half a file under its id) and only
then recorded as Optuna's ``artifacts:ID`` attr (Optuna's own ``upload_artifact`` records first
and writes after: a kill between leaves an id naming no file); sweeper's record of the trial's
files (``KEPT_ATTR``) is stored after all of them, with the tell. A trial pushed out of the kept
set, or finished without its files recorded (its worker killed while uploading, a failed upload),
is marked removed on the study first, then every file it started is deleted, half-written ones
included. A kill between any two steps leaves at worst a file no record names, deleted once the
trial is finished (failed by the reaper, for a dead worker) and the next trial is told.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import optuna
from optuna.artifacts import download_artifact
from optuna.trial import FrozenTrial

from sweeper.config.spec import SweepSpec
from sweeper.errors import SpecError, SweeperError
from sweeper.store import optuna_internals as oi
from sweeper.store.artifact_stores import is_s3, normalise, open_store, remove_quietly
from sweeper.store.keys import ARTIFACTS_ATTR, KEPT_ATTR, REMOVED_PREFIX, UPLOADING_ATTR
from sweeper.store.pareto import candidates, first_value, pareto_front
from sweeper.store.progress import ranked
from sweeper.store.storage import parse_url


def store_for(spec: SweepSpec, url: str) -> str:
    """Where a run on ``url`` keeps models: ``artifacts.store`` (a folder or an s3 URL, checked
    to be writable now), or ``<stem>.artifacts/`` beside a SQLite store file; any other store
    needs ``artifacts.store`` (one line, naming it)."""
    if spec.artifacts.store:
        return check_store(normalise(spec.artifacts.store))
    where = parse_url(url)
    if where.kind == "sqlite" and where.is_file:
        db = Path(where.path or "").expanduser().resolve()
        return str(db.parent / f"{db.stem}.artifacts")
    raise SpecError(spec.source or f"study {spec.name}", "artifacts.store",
                    f"needed: storage {url} is not a SQLite file, so there is no folder beside it for the kept "
                    "models (give one: 'artifacts: {store: FOLDER}')")


def check_store(location: str) -> str:
    """``location``, once an s3 one is known to answer (boto3 installed, the bucket reachable)."""
    if is_s3(location):
        open_store(location, check=True)
    return location


def record_location(study: optuna.Study, location: str) -> None:
    """Store on the study where its new kept models go (workers reached over gRPC read it there)."""
    if study.user_attrs.get(ARTIFACTS_ATTR) != location:
        study.set_user_attr(ARTIFACTS_ATTR, location)


def study_location(study: optuna.Study) -> str:
    location = study.user_attrs.get(ARTIFACTS_ATTR)
    if not location:
        raise SweeperError(f"study {study.study_name!r} records no store for kept models; run or resume it once")
    return str(location)


def kept_numbers(trials: Sequence[FrozenTrial], spec: SweepSpec) -> set[int]:
    """The trials (by number) whose models are kept: the best K by the first objective (as
    ``best`` ranks them: feasible, a sampler's repeat left out), with several objectives the
    Pareto set (up to K, best first by the first objective), or (``all``) every completed one.
    ``trials`` in trial order: ties go to the earlier trial."""
    keep = spec.artifacts.keep
    if keep is None:
        return set()
    if keep == "all":
        return {t.number for t in candidates(trials)}
    if spec.multi_objective:
        best = sorted(pareto_front(trials, spec.directions), key=first_value, reverse=spec.directions[0] == "maximize")
    else:
        best = ranked(trials, spec.direction)
    return {t.number for t in best[:int(keep)]}


def upload(trial: optuna.Trial, location: str, files: Sequence[tuple[str, dict[str, Any]]],
           facts: dict[str, Any]) -> dict[str, Any]:
    """Upload a running trial's model files (path, where: split and repeat) to the store at
    ``location``: ids stored first, then each file written whole and recorded as Optuna's
    ``artifacts:ID`` attr; returns the record to store as ``KEPT_ATTR`` once every file is in place."""
    store = open_store(location)
    ids = [str(uuid.uuid4()) for _ in files]
    trial.storage.set_trial_system_attr(oi.trial_id(trial), UPLOADING_ATTR, {"store": location, "ids": ids})
    fits = []
    for (path, where), artifact_id in zip(files, ids):
        with open(path, "rb") as f:
            store.write(artifact_id, f)
        oi.record_artifact(trial, artifact_id, os.path.basename(path))
        fits.append({**where, "artifact_id": artifact_id})
    return {"store": location, "fits": fits, **facts}


def started_ids(t: FrozenTrial) -> list[str]:
    """Every file id a trial's uploads named: recorded by sweeper, by Optuna, or only started."""
    record = t.user_attrs.get(KEPT_ATTR) or {}
    ids = [f["artifact_id"] for f in record.get("fits") or []]
    ids += oi.artifact_ids(t) + list((t.system_attrs.get(UPLOADING_ATTR) or {}).get("ids") or [])
    return list(dict.fromkeys(ids))


def remove_pushed_out(study: optuna.Study, spec: SweepSpec) -> list[int]:
    """Delete the files of finished trials whose models are not kept: pushed out of the best K,
    failed after they uploaded, or finished without a record of their files (a worker killed
    while uploading, an upload that failed); returns their numbers."""
    trials = study.get_trials(deepcopy=False)
    keep = kept_numbers(trials, spec)
    marks = study.user_attrs
    fallback = marks.get(ARTIFACTS_ATTR)
    removed = []
    for t in trials:
        if not t.state.is_finished() or REMOVED_PREFIX + str(t.number) in marks:
            continue
        record = t.user_attrs.get(KEPT_ATTR) or {}
        ids = started_ids(t)
        if not ids or (t.number in keep and record.get("fits")):
            continue
        location = record.get("store") or (t.system_attrs.get(UPLOADING_ATTR) or {}).get("store") or fallback
        study.set_user_attr(REMOVED_PREFIX + str(t.number), ids)  # marked first: a kill then leaves orphans
        if location:
            store = open_store(str(location))
            for artifact_id in ids:
                remove_quietly(store, artifact_id)
        removed.append(t.number)
    return removed


@dataclass
class Kept:
    """A trial's kept models: one file per fit (split x repeat) in the store at ``store``, and
    what predicting needs."""

    number: int
    store: str  # a folder or an s3 URL (artifact_stores)
    fits: list[dict[str, Any]]  # split, repeat, artifact_id of each file
    classes: list[str]
    pixel_divisor: float
    shape: list[int]

    def names(self) -> list[str]:
        """A .keras file name per fit (Keras loads only files named so; artifact ids are bare):
        ``trial-N.keras`` for a trial of one fit, else ``trial-N-fold-S.keras`` (k-fold),
        ``trial-N-repeat-R.keras`` (repeats) or ``trial-N-fold-S-repeat-R.keras`` (both), S and R
        counted from 0 as ``split`` and ``repeat`` are stored."""
        folds = any(f["split"] for f in self.fits)
        repeats = any(f["repeat"] for f in self.fits)
        return [f"trial-{self.number}" + (f"-fold-{f['split']}" if folds else "")
                + (f"-repeat-{f['repeat']}" if repeats else "") + ".keras" for f in self.fits]

    def download(self, folder: Path) -> list[Path]:
        """Copy the files into ``folder`` under ``names()``, each written under a temporary name
        and renamed into place (replacing a file of that name)."""
        folder.mkdir(parents=True, exist_ok=True)
        store = open_store(self.store)
        out = []
        for fit, name in zip(self.fits, self.names()):
            target = folder / name
            part = folder / f".{name}.part"
            part.unlink(missing_ok=True)
            try:
                download_artifact(artifact_store=store, file_path=str(part), artifact_id=fit["artifact_id"])
                os.replace(part, target)
            finally:
                part.unlink(missing_ok=True)
            out.append(target)
        return out


def kept_numbers_now(study: optuna.Study) -> list[int]:
    """The trials whose models are in the store now (recorded and not removed)."""
    marks = study.user_attrs
    return [t.number for t in study.get_trials(deepcopy=False)
            if (t.user_attrs.get(KEPT_ATTR) or {}).get("fits") and REMOVED_PREFIX + str(t.number) not in marks]


def kept(study: optuna.Study, spec: SweepSpec, number: int) -> Kept:
    """Trial ``number``'s kept models, or a one-line ``SweeperError`` naming what is missing."""
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise SweeperError(f"study {spec.name!r} has no trial {number}")
    record = found[0].user_attrs.get(KEPT_ATTR) or {}
    now = ", ".join(map(str, kept_numbers_now(study))) or "none"
    if not spec.artifacts.active and not record:
        raise SweeperError(f"study {spec.name!r} keeps no trained models (add 'artifacts: {{keep: K}}' to its "
                           "sweep file and run it again)")
    if record.get("error"):
        raise SweeperError(f"trial {number}'s models were not kept: {record['error']}")
    if not record.get("fits"):
        raise SweeperError(f"trial {number} has no kept model (artifacts.keep: {spec.artifacts.keep}; "
                           f"trials with kept models: {now})")
    if REMOVED_PREFIX + str(number) in study.user_attrs:
        raise SweeperError(f"trial {number}'s kept models were removed when better trials pushed it out "
                           f"(artifacts.keep: {spec.artifacts.keep}; trials with kept models: {now})")
    store = open_store(str(record["store"]))
    for fit in record["fits"]:
        if not store.exists(fit["artifact_id"]):
            raise SweeperError(f"trial {number}'s kept model {store.describe(fit['artifact_id'])} is missing "
                               "(was the folder moved?)")
    return Kept(number, str(record["store"]), list(record["fits"]), list(record.get("classes") or []),
                float(record.get("pixel_divisor") or 1.0), list(record.get("shape") or []))


def export_models(study: optuna.Study, spec: SweepSpec, folder: Path, force: bool = False) -> list[tuple[int, list[Path]]]:
    """``export --models DIR``: every kept trial's models as .keras files in ``folder`` (``Kept.names``).
    Nothing is written when a model is missing or, unless ``force``, when a file of those names
    is already there (one line naming it)."""
    numbers = kept_numbers_now(study)
    if not numbers:
        why = f"artifacts.keep: {spec.artifacts.keep}" if spec.artifacts.active else \
            "its sweep file has no 'artifacts: {keep: K}'"
        raise SweeperError(f"study {spec.name!r} has no kept models to export ({why})")
    found = [kept(study, spec, n) for n in numbers]
    targets = [folder / name for k in found for name in k.names()]
    there = [p for p in targets if p.exists()]
    if there and not force:
        more = f" (and {len(there) - 1} more of the files to write)" if len(there) > 1 else ""
        raise SweeperError(f"--models: {there[0]} already exists{more}; nothing written (pass --force to "
                           "replace them, or give another folder)")
    if folder.exists() and not folder.is_dir():
        raise SweeperError(f"--models: {folder} is not a folder")
    return [(k.number, k.download(folder)) for k in found]
