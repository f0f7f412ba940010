"""Imports point one way: cli / api -> worker -> train, store, search, report -> config;
store reads the search's strategies, so search sits under store (it never reads the store), and
train does not import search; tracking (the experiment trackers' runs) sits under worker and report,
above store and config.
Read from the source (no import runs), so a module that reaches up a layer fails here by name."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sweeper"
# What each folder may not import (a lower layer never imports a higher one).
FORBIDDEN = {
    "config": ("search", "store", "train", "worker", "report", "tracking", "cli", "api", "deliver"),
    "search": ("store", "train", "worker", "report", "tracking", "cli", "api", "deliver"),
    "store": ("train", "worker", "report", "tracking", "cli", "api", "deliver"),
    "train": ("search", "worker", "report", "tracking", "cli", "api", "deliver"),
    "tracking": ("train", "worker", "report", "cli", "api", "deliver"),
    "report": ("train", "worker", "cli", "api"),
    "worker": ("cli", "api", "report"),
}


def imported(path: Path) -> set[str]:
    """The sweeper subpackages and top-level modules a file imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sweeper"):
            parts = node.module.split(".")
            found |= {parts[1]} if len(parts) > 1 else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("sweeper.")}
    return found


def test_no_module_imports_a_higher_layer() -> None:
    assert {"store", "worker", "config"} <= imported(PACKAGE / "worker" / "loop.py")  # the reader reads
    wrong = [f"{path.relative_to(PACKAGE.parent)} imports sweeper.{name}"
             for layer, banned in FORBIDDEN.items() for path in sorted((PACKAGE / layer).rglob("*.py"))
             for name in sorted(imported(path) & set(banned))]
    assert not wrong, "\n".join(wrong)


def test_no_module_is_over_400_lines() -> None:
    long = [f"{p.relative_to(PACKAGE.parent)}: {n} lines" for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > 400]
    assert not long, "\n".join(long)
