"""Kept models in S3 (``artifacts: {store: s3://BUCKET/PREFIX}``, Optuna's ``Boto3ArtifactStore``),
tested against moto's standalone S3-compatible server over real HTTP (not AWS), boto3 unmodified
and pointed at it by the standard ``AWS_ENDPOINT_URL``: ``sweeper run`` uploads the best K trials'
models under the prefix and removes pushed-out ones, ``best --stored`` and ``export --models``
read them back and each scores as stored; a worker killed while uploading leaves no id naming a
missing object; without boto3, a malformed s3 URL or a bucket that does not answer: one line,
exit 2, no study."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, write_sweep
from support.kept import assert_right_on_own_split, dangling, kept_now, url_of

from sweeper.cli import main
from sweeper.store import optuna_internals as oi

GRID = {"model__batchnorm": [True, False], "model__dropout": [0.0, 0.2]}  # write_sweep's: 4 trials


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """A local S3-compatible server (moto), a bucket ``models``, and boto3's client for it; the
    ``AWS_*`` variables reach the ``sweeper`` subprocesses too."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    for key, value in {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test",
                       "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    client = boto3.client("s3")
    client.create_bucket(Bucket="models")
    try:
        yield client
    finally:
        server.stop()


def keys(client: Any, prefix: str) -> set[str]:
    return {o["Key"] for o in client.list_objects_v2(Bucket="models", Prefix=prefix).get("Contents", [])}


@pytest.mark.slow  # a whole sweep and its resume (34 s / 22 s here); .ci/run runs the slow set too
def test_kept_models_go_to_s3_and_come_back_scoring_as_stored(tmp_path: Path, s3: Any) -> None:
    import keras

    import sweeper

    path = write_sweep(tmp_path / "s3.yaml", name="ins3", params=GRID,
                       artifacts={"keep": 2, "store": "s3://models/sweeps/tiny/"})
    out = run_cli("run", str(path), "--quiet", "--no-report", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    sweep = sweeper.load("ins3", url_of(tmp_path))
    study = sweep.study
    kept = kept_now(study)
    assert len(kept) == 2 and all(t.user_attrs["sweeper:kept_models"]["store"] == "s3://models/sweeps/tiny"
                                  for t in kept)
    # Only the best two trials' objects are in the bucket (pushed-out ones deleted), under the prefix.
    assert keys(s3, "") == {f"sweeps/tiny/{i}" for t in kept for i in oi.artifact_ids(t)}
    assert len([t for t in study.get_trials() if oi.artifact_ids(t)]) > 2  # some were uploaded, then removed

    def exists(artifact_id: str) -> bool:
        return f"sweeps/tiny/{artifact_id}" in keys(s3, "sweeps/tiny/")

    assert dangling(study, exists) == []
    assert not (tmp_path / "store.artifacts").exists()
    url = url_of(tmp_path)
    best = run_cli("best", "ins3", "--storage", url, "--stored", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert best.returncode == 0 and "1 kept model(s) loaded, nothing trained" in best.stdout, best.stderr
    out = run_cli("export", "ins3", "--storage", url, "--models", str(tmp_path / "m"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for t in kept:
        assert_right_on_own_split(sweep, t, [keras.models.load_model(tmp_path / "m" / f"trial-{t.number}.keras")])
    assert sweep.model(kept[0].number).count_params() == kept[0].user_attrs["metrics"]["n_params"]


def one_line_refusal(capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], words: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0], err
    assert not (tmp_path / "store.db").exists()  # no study was made


def test_without_boto3_a_run_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 raises ImportError, as when not installed
    path = write_sweep(tmp_path / "s3.yaml", name="nob", artifacts={"keep": 1, "store": "s3://models/x"})
    one_line_refusal(capsys, tmp_path, ["run", str(path), "--quiet"],
                     "artifacts.store: s3://models/x needs boto3, which is not installed (pip install 'sweeper[s3]')")


def test_a_bucket_that_does_not_answer_is_one_line(tmp_path: Path, s3: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_sweep(tmp_path / "s3.yaml", name="nobucket", artifacts={"keep": 1, "store": "s3://nosuch/x"})
    one_line_refusal(capsys, tmp_path, ["run", str(path), "--quiet"],
                     "artifacts.store: s3://nosuch/x: bucket 'nosuch' cannot be reached")


@pytest.mark.parametrize("store, words", [
    ("s3://Models_1/x", "'Models_1' is not a bucket name"),
    ("s3://", "'' is not a bucket name"),
    ("s3://models/a//b", "prefix 'a//b'"),
    ("gs://models/x", "only folder paths and s3://BUCKET/PREFIX URLs are supported"),
])
def test_a_malformed_store_url_is_one_line(tmp_path: Path, store: str, words: str) -> None:
    path = write_sweep(tmp_path / "bad.yaml", name="bad", artifacts={"keep": 1, "store": store})
    for command in (["validate", str(path)], ["run", str(path), "--quiet"]):
        out = run_cli(*command, cwd=tmp_path)
        assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert "artifacts.store: " in out.stderr and words in out.stderr, out.stderr
    assert not (tmp_path / "store.db").exists()


@pytest.mark.slow  # a whole sweep killed and resumed (about 40 s here)
def test_a_worker_killed_while_uploading_to_s3_leaves_no_dangling_artifact_id(
        tmp_path: Path, s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sweeper run`` ends as SIGKILL would while boto3 reads its third kept model for the PUT
    (the test hook ``SWEEPER_TEST_DIE_IN_UPLOAD``): the study stays readable, no trial names an
    object that is not in the bucket, and ``resume`` finishes the sweep with an object behind
    every id and nothing else under the prefix."""
    import optuna
    from optuna.trial import TrialState

    from sweeper.store.artifact_stores import DIE_IN_UPLOAD_ENV
    from sweeper.store.keys import UPLOADING_ATTR

    path = write_sweep(tmp_path / "s3.yaml", name="kills3", params=GRID,
                       artifacts={"keep": 3, "store": "s3://models/sweeps/k/"})
    monkeypatch.setenv(DIE_IN_UPLOAD_ENV, "3")  # the third upload: trials 0 and 1 are kept by then
    died = run_cli("run", str(path), "--quiet", "--no-report", cwd=tmp_path)
    assert died.returncode == 137, died.stderr

    url = url_of(tmp_path)
    study = optuna.load_study(study_name="kills3", storage=url)
    trials = study.get_trials()
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]
    [started] = trials[2].system_attrs[UPLOADING_ATTR]["ids"]
    assert oi.artifact_ids(trials[2]) == []  # named only by the intent, and not in the bucket
    assert f"sweeps/k/{started}" not in keys(s3, "sweeps/k/")

    def exists(artifact_id: str) -> bool:
        return f"sweeps/k/{artifact_id}" in keys(s3, "sweeps/k/")

    assert dangling(study, exists) == []
    assert [t.number for t in kept_now(study)] == [0, 1]
    best = run_cli("best", "kills3", "--storage", url, "--stored", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert best.returncode == 0 and "1 kept model(s) loaded, nothing trained" in best.stdout, best.stderr

    monkeypatch.delenv(DIE_IN_UPLOAD_ENV)
    done = run_cli("resume", "kills3", "--storage", url, "--quiet", "--no-report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="kills3", storage=url)
    assert study.get_trials()[2].state == TrialState.FAIL and len(study.get_trials()) == 5
    assert dangling(study, exists) == []
    kept = kept_now(study)
    assert len(kept) == 3 and keys(s3, "sweeps/k/") == {f"sweeps/k/{i}" for t in kept for i in oi.artifact_ids(t)}
