"""Where kept models live (``artifacts.store``): a folder, through Optuna's
``FileSystemArtifactStore``, or ``s3://BUCKET/PREFIX``, through Optuna's ``Boto3ArtifactStore``
(boto3: ``pip install 'sweeper[s3]'``; credentials, region and endpoint come from boto3's own
settings: ``AWS_ENDPOINT_URL`` points it at an S3-compatible server).

A location is one string, stored on the study (``sweeper:artifacts``) and on each kept trial:
a resolved folder path or a normalised s3 URL. Every store here writes a file whole or not at
all under its artifact id (a folder: a temporary name renamed into place; S3: an object appears
only once its upload completes), so a reader never finds half a model under an id.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

from optuna.artifacts import Boto3ArtifactStore, FileSystemArtifactStore
from optuna.artifacts.exceptions import ArtifactNotFound

from sweeper.config.sections import split_store_url
from sweeper.errors import SweeperError

DIE_IN_UPLOAD_ENV = "SWEEPER_TEST_DIE_IN_UPLOAD"  # tests only: N; this process dies writing its N-th file
_written = 0


def normalise(store: str) -> str:
    """A location as stored: an s3 URL as ``s3://bucket[/prefix]``, a folder as its absolute path
    (a relative one is taken from the current folder)."""
    where = split_store_url(store)
    if where is None:
        return str(Path(store).expanduser().resolve())
    bucket, prefix = where
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def is_s3(location: str) -> bool:
    return split_store_url(location) is not None


class FolderStore(FileSystemArtifactStore):
    """Optuna's file-system artifact store, each file written under a temporary name
    (``.ID.part``) and renamed into place."""

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
                f.write(_maybe_die(f, chunk))
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, self.folder / artifact_id)

    def remove(self, artifact_id: str) -> None:
        """The file, and what a worker killed while writing it left (its ``.part``)."""
        (self.folder / f".{artifact_id}.part").unlink(missing_ok=True)
        super().remove(artifact_id)

    def exists(self, artifact_id: str) -> bool:
        return (self.folder / artifact_id).is_file()

    def describe(self, artifact_id: str) -> str:
        return str(self.folder / artifact_id)


class S3Store(Boto3ArtifactStore):
    """Optuna's Boto3 artifact store with every object under ``prefix/``."""

    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        super().__init__(bucket, client)
        self.prefix = f"{prefix}/" if prefix else ""

    def open_reader(self, artifact_id: str) -> BinaryIO:
        return super().open_reader(self.prefix + artifact_id)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        super().write(self.prefix + artifact_id, _DyingReader(content_body) if _dies_now() else content_body)

    def remove(self, artifact_id: str) -> None:
        super().remove(self.prefix + artifact_id)

    def exists(self, artifact_id: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.prefix + artifact_id)
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return False
            raise
        return True

    def describe(self, artifact_id: str) -> str:
        return f"s3://{self.bucket}/{self.prefix}{artifact_id}"


ArtifactStore = FolderStore | S3Store


def open_store(location: str, check: bool = False) -> ArtifactStore:
    """The artifact store at ``location``. ``check``: make sure it can be written now (the bucket
    answers); a one-line ``SweeperError`` otherwise, e.g. boto3 missing."""
    where = split_store_url(location)
    if where is None:
        return FolderStore(Path(location))
    bucket, prefix = where
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        raise SweeperError(f"artifacts.store: {location} needs boto3, which is not installed "
                           "(pip install 'sweeper[s3]')") from None
    store = S3Store(bucket, prefix, boto3.client("s3"))
    if check:
        try:
            store.client.head_bucket(Bucket=bucket)
        except (BotoCoreError, ClientError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SweeperError(f"artifacts.store: {location}: bucket {bucket!r} cannot be reached ({first})") from None
    return store


def remove_quietly(store: ArtifactStore, artifact_id: str) -> None:
    try:
        store.remove(artifact_id)
    except (ArtifactNotFound, FileNotFoundError):
        pass


def _dies_now() -> bool:
    """The test hook ``DIE_IN_UPLOAD_ENV``: whether the upload starting now is the one to die in."""
    global _written
    _written += 1
    return os.environ.get(DIE_IN_UPLOAD_ENV) == str(_written)


def _maybe_die(f: BinaryIO, chunk: bytes) -> bytes:
    """The test hook in a folder: write half the file's first chunk and end the process as
    SIGKILL would (no clean-up), leaving a half-written file."""
    if f.tell() == 0 and _dies_now():
        f.write(chunk[:len(chunk) // 2])
        f.flush()
        os._exit(137)
    return chunk


class _DyingReader:
    """The test hook in S3: the process ends as SIGKILL would when boto3 reads the file for its
    PUT (an S3 object appears whole or not at all: nothing half-written can stay behind)."""

    def __init__(self, body: BinaryIO) -> None:
        self.body = body

    def read(self, size: int = -1) -> bytes:
        os._exit(137)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.body, name)
