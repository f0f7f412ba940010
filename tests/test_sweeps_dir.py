"""The example sweeps ship valid, and datasets that need a download fail in one line offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli
from sweeper.spec import load_spec

SWEEPS = sorted((Path(__file__).parent.parent / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_example_sweep_is_valid(path: Path) -> None:
    spec = load_spec(path)
    assert spec.budget or spec.timeout


def test_unreachable_download_is_one_line_and_creates_no_study(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty Keras cache and a proxy that refuses connections: the download fails fast here
    # and on machines that do have a network.
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    sweep = Path(__file__).parent.parent / "sweeps" / "cifar10_cnn.yaml"
    proc = run_cli("run", str(sweep), "--storage", f"sqlite:///{tmp_path / 'store.db'}", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.startswith("sweeper:")]
    assert len(lines) == 1 and "'cifar10' could not be downloaded" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "store.db").exists()
