"""``copy``: move a study between storages (SQLite file <-> PostgreSQL server), every trial kept."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from sweeper.store import transfer


def register(sub: Any) -> None:
    p = sub.add_parser(
        "copy", help="copy a study to another storage (e.g. SQLite -> PostgreSQL), every trial kept",
        description="Copy STUDY from storage SRC_URL to DST_URL with optuna.copy_study: the stored sweep "
        "definition and every trial (all states, params, values, attributes, intermediate values). "
        "The copy is checked trial by trial; a failed or differing copy is removed from DST_URL. "
        "Queued trials stay queued; a running trial is failed and queued again in the destination "
        "once its heartbeat grace period has passed (at once if its owner died on this host).",
    )
    p.add_argument("src", metavar="SRC_URL", help="storage holding the study (sqlite:///FILE, postgresql://..., grpc://...)")
    p.add_argument("dst", metavar="DST_URL", help="storage to copy it into (created if need be)")
    p.add_argument("study", metavar="STUDY")
    p.set_defaults(func=cmd_copy)


def cmd_copy(args: argparse.Namespace) -> int:
    result = transfer.copy_study(args.study, args.src, args.dst)
    print(f"copied {result.study} ({result.summary()}) to {args.dst}")
    if result.running:
        print(f"sweeper: {result.running} running trial(s) copied as running: in the destination they are "
              "failed and queued again once their heartbeat goes stale", file=sys.stderr)
    return 0
