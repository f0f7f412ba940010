"""Options and helpers shared by the command modules."""

from __future__ import annotations

import argparse

from sweeper.spec import DEFAULT_STORAGE


def add_storage(p: argparse.ArgumentParser, default: str | None = DEFAULT_STORAGE) -> None:
    p.add_argument(
        "--storage", default=default,
        help=f"study storage URL (default: {default or 'the one in the sweep file'}); "
        "sqlite:///FILE, postgresql://USER@HOST/DB, grpc://HOST:PORT",
    )
