"""``sweeper export STUDY --models DIR``, through ``sweeper run`` on 400 sklearn digits: the kept
models as ``.keras`` files named by trial (and fold / repeat), each loaded with plain
``keras.models.load_model`` from DIR getting right on its own validation split what its trial's
stored score counts; files already in DIR are refused in one line (exit 2, nothing written)
unless ``--force``; a study with no kept models is one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import run_cli
from support.kept import assert_right_on_own_split, kept_now, run, url_of

from sweeper.store.keys import REMOVED_PREFIX

GRID = {"model__batchnorm": [True, False], "model__dropout": [0.0, 0.2]}  # write_sweep's: 4 trials


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def export(tmp_path: Path, name: str, folder: Path, *more: str) -> tuple[int, str, str]:
    out = run_cli("export", name, "--storage", url_of(tmp_path), "--models", str(folder), *more, cwd=tmp_path)
    return out.returncode, out.stdout, out.stderr


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_export_writes_the_kept_models_and_never_clobbers_silently(tmp_path: Path) -> None:
    import keras

    study, sweep = run(tmp_path, "exp", params=GRID, artifacts={"keep": 2})
    kept = kept_now(study)
    assert len(kept) == 2 and any(k.startswith(REMOVED_PREFIX) for k in study.user_attrs)  # two pushed out
    models = tmp_path / "models"
    rc, stdout, stderr = export(tmp_path, "exp", models)
    assert rc == 0, stderr
    assert sorted(p.name for p in models.iterdir()) == sorted(f"trial-{t.number}.keras" for t in kept)
    for t in kept:
        assert f"trial {t.number}: {models / f'trial-{t.number}.keras'}" in stdout
        assert_right_on_own_split(sweep, t, [keras.models.load_model(models / f"trial-{t.number}.keras")])
    # Again into the same folder: refused, nothing changed; a file of the user's is never touched.
    (models / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in models.iterdir()}
    rc, _, stderr = export(tmp_path, "exp", models)
    line = one_line(stderr)
    assert rc == 2 and "already exists (and 1 more" in line and "--force" in line, line
    assert {p.name: p.read_bytes() for p in models.iterdir()} == before
    rc, _, stderr = export(tmp_path, "exp", models, "--force")
    assert rc == 0, stderr
    assert {p.name for p in models.iterdir()} == set(before) and (models / "notes.txt").read_text() == "mine"
    # --models writes models only.
    rc, _, stderr = export(tmp_path, "exp", tmp_path / "other", "--format", "csv")
    assert rc == 2 and "leave out --format" in one_line(stderr) and not (tmp_path / "other").exists()


def test_export_names_each_fold_and_repeat(tmp_path: Path) -> None:
    import keras

    study, sweep = run(tmp_path, "folds", params={"model__dropout": [0.0, 0.2]},
                       validation={"kfold": 2, "repeats": 2}, artifacts={"keep": 1})
    [best] = kept_now(study)
    rc, _, stderr = export(tmp_path, "folds", tmp_path / "m")
    assert rc == 0, stderr
    names = [f"trial-{best.number}-fold-{s}-repeat-{r}.keras" for s, r in
             [(f["split"], f["repeat"]) for f in best.user_attrs["sweeper:kept_models"]["fits"]]]
    assert sorted(names) == sorted(f"trial-{best.number}-fold-{s}-repeat-{r}.keras" for s in (0, 1) for r in (0, 1))
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(names)
    assert_right_on_own_split(sweep, best, [keras.models.load_model(tmp_path / "m" / n) for n in names])


def test_a_study_with_no_kept_models_is_one_line(tmp_path: Path) -> None:
    run(tmp_path, "plain", params={"model__dropout": [0.0]})
    rc, _, stderr = export(tmp_path, "plain", tmp_path / "m")
    line = one_line(stderr)
    assert rc == 2 and "study 'plain' has no kept models to export" in line and "artifacts: {keep: K}" in line
    assert not (tmp_path / "m").exists()
