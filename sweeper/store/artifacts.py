"""Kept models (``artifacts: {keep: K}``): the folder a study's trained models go to, the trials
whose models it keeps, and their files, through Optuna's artifact store.

A model reaches the store as a finished temporary .keras file (train/trial.py ``TrainedModel``).
``upload`` runs while its trial still runs (Optuna takes no attr on a finished trial): each file
is written under a temporary name and renamed into place, and sweeper's record of the trial's
files (``KEPT_ATTR``) is stored after all of them are in place, with the tell. A trial pushed out
of the kept set is marked removed on the study first, then its files are deleted. A kill between
any two steps leaves an orphan file at worst, never a record of a half-written model.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Sequence

import optuna
from optuna.artifacts import FileSystemArtifactStore, download_artifact, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial

from sweeper.config.spec import SweepSpec
from sweeper.errors import SpecError, SweeperError
from sweeper.store.keys import ARTIFACTS_ATTR, KEPT_ATTR, REMOVED_PREFIX
from sweeper.store.pareto import candidates, first_value, pareto_front
from sweeper.store.progress import ranked
from sweeper.store.storage import parse_url


class _Store(FileSystemArtifactStore):
    """Optuna's file-system artifact store, each file written under a temporary name and renamed
    into place (a reader never finds half a file under an artifact id)."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.folder = folder

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        if not artifact_id or os.sep in artifact_id or artifact_id.startswith("."):
            raise ValueError(f"invalid artifact id {artifact_id!r}")
        self.folder.mkdir(parents=True, exist_ok=True)
        part = self.folder / f".{artifact_id}.part"
        with open(part, "wb") as f:
            while chunk := content_body.read(1 << 20):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, self.folder / artifact_id)


def folder_for(spec: SweepSpec, url: str) -> Path:
    """Where a run on ``url`` keeps models: ``artifacts.store``, or ``<stem>.artifacts/`` beside a
    SQLite store file; any other store needs ``artifacts.store`` (one line, naming it)."""
    if spec.artifacts.store:
        return Path(spec.artifacts.store).expanduser().resolve()
    where = parse_url(url)
    if where.kind == "sqlite" and where.is_file:
        db = Path(where.path or "").expanduser().resolve()
        return db.parent / f"{db.stem}.artifacts"
    raise SpecError(spec.source or f"study {spec.name}", "artifacts.store",
                    f"needed: storage {url} is not a SQLite file, so there is no folder beside it for the kept "
                    "models (give one: 'artifacts: {store: FOLDER}')")


def record_folder(study: optuna.Study, folder: Path) -> None:
    """Store on the study where its new kept models go (workers reached over gRPC read it there)."""
    if study.user_attrs.get(ARTIFACTS_ATTR) != str(folder):
        study.set_user_attr(ARTIFACTS_ATTR, str(folder))


def study_folder(study: optuna.Study) -> Path:
    folder = study.user_attrs.get(ARTIFACTS_ATTR)
    if not folder:
        raise SweeperError(f"study {study.study_name!r} records no folder for kept models; run or resume it once")
    return Path(folder)


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


def upload(trial: optuna.Trial, folder: Path, files: Sequence[tuple[str, dict[str, Any]]],
           facts: dict[str, Any]) -> dict[str, Any]:
    """Upload a running trial's model files (path, where: split and repeat) with Optuna's
    ``upload_artifact`` (a trial system attr per file); returns the record to store as
    ``KEPT_ATTR`` once every file is in place."""
    store = _Store(folder)
    fits = []
    for path, where in files:
        artifact_id = upload_artifact(artifact_store=store, file_path=path, study_or_trial=trial)
        fits.append({**where, "artifact_id": artifact_id})
    return {"store": str(folder), "fits": fits, **facts}


def remove_pushed_out(study: optuna.Study, spec: SweepSpec) -> list[int]:
    """Delete the kept models of finished trials no longer kept (pushed out of the best K, or
    failed after they uploaded); returns their numbers."""
    trials = study.get_trials(deepcopy=False)
    keep = kept_numbers(trials, spec)
    marks = study.user_attrs
    removed = []
    for t in trials:
        record = t.user_attrs.get(KEPT_ATTR)
        if not record or not record.get("fits") or not t.state.is_finished() or t.number in keep \
                or REMOVED_PREFIX + str(t.number) in marks:
            continue
        ids = [f["artifact_id"] for f in record["fits"]]
        study.set_user_attr(REMOVED_PREFIX + str(t.number), ids)  # marked first: a kill then leaves orphans
        store = _Store(Path(record["store"]))
        for artifact_id in ids:
            try:
                store.remove(artifact_id)
            except ArtifactNotFound:
                pass
        removed.append(t.number)
    return removed


@dataclass
class Kept:
    """A trial's kept models: one file per fit (split x repeat), and what predicting needs."""

    number: int
    files: list[Path]
    fits: list[dict[str, Any]]  # split, repeat, artifact_id of each file
    classes: list[str]
    pixel_divisor: float
    shape: list[int]

    def names(self) -> list[str]:
        """A .keras file name per fit (Keras loads only files named so; artifact ids are bare)."""
        if len(self.fits) == 1:
            return [f"trial-{self.number}.keras"]
        return [f"trial-{self.number}-split{f['split']}-repeat{f['repeat']}.keras" for f in self.fits]

    def download(self, folder: Path) -> list[Path]:
        """Copy the files into ``folder`` under ``names()`` (replacing files of those names)."""
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        for path, name in zip(self.files, self.names()):
            target = folder / name
            target.unlink(missing_ok=True)
            download_artifact(artifact_store=_Store(path.parent), file_path=str(target), artifact_id=path.name)
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
    files = [Path(record["store"]) / f["artifact_id"] for f in record["fits"]]
    for path in files:
        if not path.is_file():
            raise SweeperError(f"trial {number}'s kept model {path} is missing (was the folder moved?)")
    return Kept(number, files, list(record["fits"]), list(record.get("classes") or []),
                float(record.get("pixel_divisor") or 1.0), list(record.get("shape") or []))
