"""Options and helpers shared by the command modules."""

from __future__ import annotations

import argparse

from sweeper.config.spec import DEFAULT_STORAGE

# Exit codes of every command (README: "Exit codes").
EXIT_OK = 0  # done: the budget was met (or the timeout reached with a completed trial)
EXIT_UNFINISHED = 1  # the sweep ended with no completed trial, or with points still to run
EXIT_USAGE = 2  # bad input: one line names the file, key or value; nothing stored changed
EXIT_MAX_FAILURES = 3  # stopped by --max-failures
EXIT_INTERRUPTED = 130  # Ctrl-C: the running trial was queued again


def add_storage(p: argparse.ArgumentParser, default: str | None = DEFAULT_STORAGE) -> None:
    p.add_argument(
        "--storage", default=default,
        help=f"study storage URL (default: {default or 'the one in the sweep file'}); "
        "sqlite:///FILE, postgresql://USER@HOST/DB, grpc://HOST:PORT",
    )
