"""The ``data:`` section: which dataset, and for CSVs which file and columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeper.config.values import MAX_ROWS, check_int, checked, err, mapping

DATASETS = ("digits", "mnist5k", "csv", "mnist", "fashion_mnist", "cifar10")
DATA_KEYS = {"dataset", "path", "label_column", "test_path", "id_column", "limit"}
LIMIT = check_int(1, MAX_ROWS, "rows")


@dataclass(frozen=True)
class DataSpec:
    dataset: str
    path: str | None = None
    label_column: str = "label"
    test_path: str | None = None
    id_column: str = "id"
    limit: int | None = None




def parse_data(source: str, raw: Any, stored: bool = False) -> DataSpec:
    """``stored``: a definition read back from a study; its files were checked when it was made and
    need not exist on this host (show, export, copy and report read the store only)."""
    if isinstance(raw, str):
        raw = {"dataset": raw}
    raw = mapping(source, "data", raw, DATA_KEYS)
    dataset = raw.get("dataset")
    if not isinstance(dataset, str) or dataset.lower() not in DATASETS:
        raise err(source, "data.dataset", f"{dataset!r} is not a known dataset (known: {', '.join(DATASETS)})")
    dataset = dataset.lower()
    limit = raw.get("limit")
    if limit is not None:
        limit = checked(source, "data.limit", LIMIT, limit)
    label = raw.get("label_column", "label")
    id_column = raw.get("id_column", "id")
    for key, v in (("label_column", label), ("id_column", id_column)):
        if not isinstance(v, str) or not v:
            raise err(source, f"data.{key}", f"{v!r} is not a column name")
    path = test_path = None
    if dataset == "csv":
        path = raw.get("path")
        if not isinstance(path, str):
            raise err(source, "data.path", "the csv dataset needs a path to a train CSV")
        if stored:
            test_path = raw.get("test_path")
        else:
            path = _existing_csv(source, "data.path", path)
            columns = _csv_columns(source, "data.path", path)
            if label not in columns:
                raise err(source, "data.label_column", f"{label!r} is not a column of {path}")
            if raw.get("test_path") is not None:
                test_path = _existing_csv(source, "data.test_path", str(raw["test_path"]))
    elif raw.get("path") is not None or raw.get("test_path") is not None:
        raise err(source, "data.path", f"only the csv dataset takes a path (dataset is {dataset!r})")
    return DataSpec(dataset, path, label, test_path, id_column, limit)


def _existing_csv(source: str, path: str, value: str) -> str:
    p = Path(value).expanduser()
    if not p.is_absolute() and source and not p.exists():
        p = Path(source).parent / p  # relative to the sweep file as a fallback
    if not p.is_file():
        raise err(source, path, f"{value!r}: no such file")
    return str(p.resolve())


def _csv_columns(source: str, path: str, file: str) -> list[str]:
    with open(file, encoding="utf-8", errors="replace") as fh:
        header = fh.readline().strip()
    if not header:
        raise err(source, path, f"{file!r} is empty")
    return [c.strip().strip('"') for c in header.split(",")]


