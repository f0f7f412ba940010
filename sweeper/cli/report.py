"""``report``: write a study's HTML report, or one comparing studies."""

from __future__ import annotations

import argparse
from typing import Any

from sweeper.cli.common import add_storage
from sweeper.errors import SweeperError
from sweeper.store.storage import make_storage
from sweeper.store.studies import load


def register(sub: Any) -> None:
    p = sub.add_parser(
        "report", help="write reports/STUDY/index.html (parallel coordinates, insights, figures)",
        description="Write a study's report, or with --compare one parallel plot across studies.",
    )
    p.add_argument("study", nargs="?", help="the study to report on")
    add_storage(p)
    p.add_argument("--out", default="reports", help="output folder (default reports/)")
    p.add_argument("--best", action="store_true",
                   help="also refit the best trial and write best-trial/index.html (confusion matrix, "
                        "misclassified images, feature maps, training curves); Keras trials only")
    p.add_argument("--compare", nargs="+", metavar="STUDY",
                   help="one parallel plot across these studies (and STUDY, if given)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from sweeper.report import write_compare, write_report

    storage = make_storage(args.storage, must_exist=True, readonly=True)
    if args.compare:
        names = list(dict.fromkeys(([args.study] if args.study else []) + args.compare))
        if len(names) < 2:
            raise SweeperError("--compare needs at least two different studies")
        if args.best:
            raise SweeperError("--best reports on one study; leave out --compare")
        print(write_compare([load(n, storage) for n in names], args.out))
        return 0
    if not args.study:
        raise SweeperError("which study? (sweeper report STUDY, or --compare A B ...)")
    study, spec = load(args.study, storage)
    if args.best and spec.trial_function:
        print(f"note: study {spec.name!r} uses trial_function {spec.trial_function}; "
              "there is no Keras model to refit for --best")
    best: Any = False
    if args.best:
        from sweeper.deliver import best_split_refit

        best = best_split_refit(study, spec)
    print(write_report(study, spec, args.out, best=best))
    return 0
