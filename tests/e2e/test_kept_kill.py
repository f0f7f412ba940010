"""A worker killed half-way through writing a kept model (the test hook ``SWEEPER_TEST_DIE_IN_UPLOAD``:
the process ends as SIGKILL would, ``os._exit(137)``, with half the file written), driven through
``sweeper run``: the study stays readable, ``best --stored`` and ``export --models`` work for the
trials that were kept, and no trial names an artifact that does not exist (Optuna's own
``upload_artifact`` records the id before writing the file); ``resume`` then deletes the
half-written file and finishes the sweep with every recorded id naming a whole file."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from conftest import run_cli, write_sweep
from optuna.trial import TrialState
from support.kept import dangling, kept_now, url_of

from sweeper.store import optuna_internals as oi
from sweeper.store.artifact_stores import DIE_IN_UPLOAD_ENV
from sweeper.store.keys import REMOVED_PREFIX, UPLOADING_ATTR


@pytest.mark.slow  # a whole sweep and its resume (34 s / 22 s here); .ci/run runs the slow set too
def test_a_worker_killed_while_uploading_leaves_no_dangling_artifact_id(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    url = url_of(tmp_path)
    folder = tmp_path / "store.artifacts"
    sweep = write_sweep(tmp_path / "kill.yaml", name="kill", artifacts={"keep": 3})  # 4 trials, one file each
    monkeypatch.setenv(DIE_IN_UPLOAD_ENV, "3")  # the third upload: trials 0 and 1 are kept by then
    died = run_cli("run", str(sweep), "--quiet", "--no-report", cwd=tmp_path)
    assert died.returncode == 137, died.stderr

    study = optuna.load_study(study_name="kill", storage=url)
    trials = study.get_trials()
    assert [t.state for t in trials[:3]] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.RUNNING]
    [started] = trials[2].system_attrs[UPLOADING_ATTR]["ids"]
    assert oi.artifact_ids(trials[2]) == []  # the half-written file is named by nothing but the intent
    assert (folder / f".{started}.part").stat().st_size > 0 and not (folder / started).exists()
    assert dangling(study, lambda i: (folder / i).is_file()) == []
    kept = [t.number for t in kept_now(study)]
    assert kept == [0, 1]

    # Readable as it is: show, best --stored and export --models of the kept trials.
    assert run_cli("show", "kill", "--storage", url, cwd=tmp_path).returncode == 0
    best = run_cli("best", "kill", "--storage", url, "--stored", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert best.returncode == 0 and "1 kept model(s) loaded, nothing trained" in best.stdout, best.stderr
    out = run_cli("export", "kill", "--storage", url, "--models", str(tmp_path / "m"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["trial-0.keras", "trial-1.keras"]

    # Resumed: the dead worker's trial is failed and queued again, its half-written file deleted
    # (the removal recorded), and the sweep finishes with whole files behind every id.
    monkeypatch.delenv(DIE_IN_UPLOAD_ENV)
    done = run_cli("resume", "kill", "--storage", url, "--quiet", "--no-report", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="kill", storage=url)
    trials = study.get_trials()
    assert trials[2].state == TrialState.FAIL and len(trials) == 5
    assert study.user_attrs[REMOVED_PREFIX + "2"] == [started]
    assert dangling(study, lambda i: (folder / i).is_file()) == []
    kept_files = {i for t in kept_now(study) for i in oi.artifact_ids(t)}
    assert len(kept_now(study)) == 3 and {p.name for p in folder.iterdir()} == kept_files  # no .part left
    out = run_cli("export", "kill", "--storage", url, "--models", str(tmp_path / "m"), "--force", cwd=tmp_path)
    assert out.returncode == 0 and len(list((tmp_path / "m").iterdir())) == 3 + 2 - len(
        {0, 1} & {t.number for t in kept_now(study)}), out.stderr
