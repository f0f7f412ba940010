"""``report``: write a study's HTML report."""

from __future__ import annotations

import argparse
from typing import Any

from sweeper import study as st
from sweeper.cli.common import add_storage


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="write reports/STUDY/index.html (HiPlot parallel coordinates)")
    p.add_argument("study")
    add_storage(p)
    p.add_argument("--out", default="reports", help="output folder (default reports/)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from sweeper.report import write_report

    storage = st.make_storage(args.storage, must_exist=True)
    study, spec = st.load(args.study, storage)
    print(write_report(study, spec, args.out))
    return 0
