"""``best``: refit the best config(s), save .keras, report test accuracy, write a submission."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import numpy as np

from sweeper.cli.common import add_storage
from sweeper.errors import SweeperError
from sweeper.paths import study_dir
from sweeper.store.pareto import first_value
from sweeper.store.storage import make_storage
from sweeper.store.studies import load


def register(sub: Any) -> None:
    p = sub.add_parser("best", help="refit the best config on train+validation and save it (.keras)")
    p.add_argument("study")
    add_storage(p)
    p.add_argument("--ensemble", type=int, default=1, metavar="K", help="average the softmax of the top K configs")
    p.add_argument("--trial", type=int, metavar="N",
                   help="refit trial N instead of the best (needed with several objectives: show lists the Pareto set)")
    p.add_argument("--out", default="reports", help="models go to OUT/STUDY/best/ (default reports/)")
    p.add_argument("--predict", metavar="TEST_CSV", help="unlabelled test CSV to predict (Kaggle layout)")
    p.add_argument("--submission", metavar="OUT_CSV", help="write predictions as a submission CSV")
    p.add_argument("--id-column", default=None, help="id column of the test CSV and submission (default: the sweep's, 'id')")
    p.add_argument("--label-column", default="label", help="prediction column of the submission (e.g. Category)")
    p.set_defaults(func=cmd_best)


def cmd_best(args: argparse.Namespace) -> int:
    from sweeper.deliver import (
        predict_proba,
        read_test_csv,
        refit,
        top_trials,
        write_submission,
    )
    from sweeper.train.data import load_dataset
    from sweeper.train.runtime import configure_tensorflow

    if args.ensemble < 1:
        raise SweeperError(f"--ensemble: {args.ensemble} must be >= 1")
    if args.trial is not None and args.ensemble > 1:
        raise SweeperError("--trial: refits one trial; leave out --ensemble")
    storage = make_storage(args.storage, must_exist=True, readonly=True)
    study, spec = load(args.study, storage)
    if spec.trial_function:
        raise SweeperError(f"study {spec.name!r} uses trial_function {spec.trial_function}: nothing to refit")
    id_column = args.id_column or spec.data.id_column
    trials = top_trials(study, spec, args.ensemble, args.trial)  # refuses before any data is read
    configure_tensorflow()
    ds = load_dataset(spec.data)
    if args.predict:  # read after the dataset, which gives the image shape
        x_test, ids = read_test_csv(args.predict, ds, id_column)
    else:
        x_test, ids = ds.x_test, ds.test_ids
    out_dir = study_dir(spec.name, args.out) / "best"
    models = []
    for t in trials:
        fitted = refit(spec, ds, t, out_dir)
        print(f"trial {t.number} (validation {spec.metric} {first_value(t):.4f}) refit on {len(ds.y)} images: {fitted.path}")
        models.append(fitted.model)
    if ds.x_test is not None and ds.y_test is not None:
        acc = float(np.mean(predict_proba(models, ds.x_test).argmax(1) == ds.y_test))
        single = float(np.mean(predict_proba(models[:1], ds.x_test).argmax(1) == ds.y_test))
        what = f"ensemble of {len(models)}" if len(models) > 1 else "best model"
        print(f"test accuracy ({what}): {acc:.4f}" + (f"; best single {single:.4f}" if len(models) > 1 else ""))
    else:
        print("test accuracy: n/a (this dataset has no labelled test set)")
    if args.submission:
        if x_test is None:
            raise SweeperError("--submission: no test images to predict; pass --predict TEST_CSV "
                               "(or give data.test_path in the sweep file)")
        labels = np.array(ds.classes)[predict_proba(models, x_test).argmax(1)]
        labels = [int(v) if v.lstrip("-").isdigit() else v for v in labels]
        write_submission(args.submission, ids, np.array(labels, dtype=object), id_column, args.label_column)
        print(f"submission: {args.submission} ({len(ids)} rows)", file=sys.stderr)
    return 0

