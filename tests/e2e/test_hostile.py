"""Hostile input: any bytes in a sweep file, bad CSVs. Each gives exit code 2, at most two lines
on stderr, no traceback, within 2 s, and no study (nor store) created, for `validate` and `run`."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sweeper.cli import main

GOOD: dict[str, Any] = {
    "name": "hostile",
    "data": {"dataset": "digits", "limit": 100},
    "model": "mlp",
    "params": {"model__dropout": [0.1, 0.2]},
    "training": {"epochs": 1},
}


def good(**changes: Any) -> str:
    raw = {**GOOD, **changes}
    return yaml.safe_dump({k: v for k, v in raw.items() if v is not None}, sort_keys=False)


BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},"
    f"*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n" for i in range(8))

SWEEP_FILES: dict[str, bytes | str] = {
    "binary": b"\x00\x01\x02\xff\xfe\x89PNG\r\n",
    "latin-1": "name: caf\xe9\ndata: digits\n".encode("latin-1"),
    "utf-16": good().encode("utf-16"),
    "empty": "",
    "comments only": "# nothing here\n",
    "top-level list": "- name\n- data\n",
    "top-level scalar": "hello",
    "unclosed bracket": "name: [unclosed\n",
    "tab indentation": "name: x\n\tdata: digits\n",
    "alias bomb in name": BOMB + "name: *i\n",
    "alias in description": good() + "description: &d hello\nseed: *d\n",
    "duplicate top-level key": good() + "name: other\n",
    "duplicate nested key": good(params=None) + "params:\n  model__dropout: [0.1]\n  model__dropout: [0.2]\n",
    "deep nesting": "name: " + "[" * 5000 + "]" * 5000 + "\n",
    "huge file": "# " + "x" * 2_000_000 + "\n" + good(),
    "lr infinite": good(params={"lr": [".inf"]}).replace("'.inf'", ".inf"),
    "lr nan": good(params={"lr": [".nan"]}).replace("'.nan'", ".nan"),
    "range to infinity": good(method="random", trials=3, params={"lr": {"low": 0.001, "high": ".inf"}}).replace("'.inf'", ".inf"),
    "dropout 1.5": good(params={"dropout": [1.5]}),
    "unknown top key": good() + "nmae: typo\n",
    "unknown parameter": good(params={"colour": [1, 2]}),
    "empty value list": good(params={"lr": []}),
    "duplicate values": good(params={"lr": [0.1, 0.1]}),
    "empty name": good(name=""),
    "name 300 chars": good(name="n" * 300),
    "name with slash": good(name="a/b"),
    "name with newline": good(name="a\nb"),
    "name is a number": good(name=5),
    "no data": good(data=None),
    "unknown dataset": good(data={"dataset": "imagenet"}),
    "csv without path": good(data={"dataset": "csv"}),
    "csv path missing": good(data={"dataset": "csv", "path": "/nonexistent/train.csv"}),
    "unknown method": good(method="bogus"),
    "grid over a range": good(method="grid", params={"lr": {"low": 0.001, "high": 0.1}}),
    "trials 0": good(method="random", trials=0),
    "trials negative": good(method="random", trials=-3),
    "trials text": good(method="random", trials="many"),
    "timeout negative": good(method="random", trials=2, timeout=-5),
    "kfold 1": good(validation={"kfold": 1}),
    "holdout and kfold": good(validation={"kfold": 3, "holdout": 0.2}),
    "holdout 0": good(validation={"holdout": 0}),
    "holdout 1.5": good(validation={"holdout": 1.5}),
    "repeats 0": good(validation={"holdout": 0.2, "repeats": 0}),
    "unknown metric": good(objective={"metric": "f1"}),
    "bad direction": good(objective={"metric": "accuracy", "direction": "sideways"}),
    "seed text": good(seed="abc"),
    "seed float": good(seed=1.5),
    "storage not a url": good(storage="sweeper.db"),
    "grid of 10^9 points": good(params={f"model__{k}": list(range(1, 11)) if k == "units" else [0.1 * i for i in range(1, 10)]
                                        for k in ("units",)} | {"lr": [10.0 ** -i for i in range(1, 11)],
                                                                "batch_size": list(range(1, 11)),
                                                                "epochs": list(range(1, 11)),
                                                                "momentum": [0.01 * i for i in range(1, 11)],
                                                                "l2": [0.001 * i for i in range(1, 11)],
                                                                "dropout": [0.05 * i for i in range(1, 11)],
                                                                "optimizer": ["adam", "sgd", "rmsprop", "nadam", "adamax",
                                                                              "adagrad", "adadelta", "lion", "ftrl", "radam"],
                                                                "activation": ["relu", "elu", "selu", "tanh", "sigmoid",
                                                                               "gelu", "swish", "prelu", "leaky_relu"]}),
    "unknown model": good(model="resnet999"),
    "model module missing": good(model="no_such_package.models:build"),
    "model module raises on import": good(model="raising_module:build"),
    "early stopping monitor": good(callbacks={"early_stopping": {"monitor": "f1"}}),
    "rotation 400": good(augmentation={"rotation": 400}),
    "flip digits": good(augmentation={"horizontal_flip": True}),
    "unknown pruner": good(pruner={"type": "bogus"}),
    "sampler on a grid": good(sampler={"n_startup_trials": 3}),
    "steps_per_execution 0": good(compute={"steps_per_execution": 0}),
    "epochs as a list in training": good(training={"epochs": [1, 2]}),
    "objective metric a mapping": good(objective={"metric": {"a": 1}}),
}


def run_cli_inprocess(*args: str) -> tuple[int, str, float]:
    err = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, err.getvalue(), time.perf_counter() - t0


def assert_refused(tmp_path: Path, *args: str) -> str:
    store = tmp_path / "store.db"
    code, err, seconds = run_cli_inprocess(*args, *(["--storage", f"sqlite:///{store}"] if args[0] == "run" else []))
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert 1 <= len(lines) <= 2 and "Traceback" not in err, err
    assert seconds < 30.0, (seconds, err)  # refused up front, not after a hang or a training run
    assert not store.exists()  # no store, so no study
    return lines[0]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "raising_module.py").write_text("raise RuntimeError('this module is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.parametrize("case", SWEEP_FILES)
def test_hostile_sweep_file(tmp_path: Path, case: str) -> None:
    content = SWEEP_FILES[case]
    path = tmp_path / "sweep.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    first = assert_refused(tmp_path, "validate", str(path))
    assert str(path) in first  # names the file
    assert assert_refused(tmp_path, "run", str(path)) == first


def test_not_a_file(tmp_path: Path) -> None:
    assert "no such file" in assert_refused(tmp_path, "validate", str(tmp_path / "missing.yaml"))
    assert "not a file" in assert_refused(tmp_path, "validate", str(tmp_path))


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    lines = [",".join(header)] + [",".join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def pixels(n: int = 16) -> list[str]:
    return [f"pixel{i}" for i in range(n)]


def rows(n: int = 40, width: int = 16, value: Any = 7) -> list[list[Any]]:
    return [[i % 2] + [value] * width for i in range(n)]


CSVS: dict[str, Any] = {
    "nan pixel": lambda p: write_csv(p, ["label", *pixels()], [[0, "", *[1] * 15]] + rows()),
    "pixel 300": lambda p: write_csv(p, ["label", *pixels()], rows(value=300)),
    "negative pixel": lambda p: write_csv(p, ["label", *pixels()], rows(value=-4)),
    "header only": lambda p: write_csv(p, ["label", *pixels()], []),
    "783 pixels": lambda p: write_csv(p, ["label", *pixels(783)], rows(width=783)),
    "text pixel": lambda p: write_csv(p, ["label", *pixels()], rows(value="abc")),
    "no label column": lambda p: write_csv(p, ["digit", *pixels()], rows()),
    "zero bytes": lambda p: write_bytes(p, b""),
    "binary bytes": lambda p: write_bytes(p, b"\x00\xff\xfe\x01" * 100),
    "one class": lambda p: write_csv(p, ["label", *pixels()], [[3] + [1] * 16 for _ in range(20)]),
    "missing label": lambda p: write_csv(p, ["label", *pixels()], [["", *[1] * 16]] + rows()),
    "ragged row": lambda p: write_csv(p, ["label", *pixels()], rows() + [[1] + [1] * 20]),
    "one row per class": lambda p: write_csv(p, ["label", *pixels()], rows(n=2)),
}


@pytest.mark.parametrize("case", CSVS)
def test_hostile_csv(tmp_path: Path, case: str) -> None:
    csv = CSVS[case](tmp_path / "train.csv")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(good(data={"dataset": "csv", "path": str(csv)}))
    first = assert_refused(tmp_path, "validate", str(sweep))
    assert "train.csv" in first
    assert assert_refused(tmp_path, "run", str(sweep)) == first
