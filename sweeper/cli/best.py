"""``best``: refit the best config(s) (or, ``--stored``, load the models kept while the sweep ran),
save .keras, report test accuracy, write a submission."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

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
    p.add_argument("--stored", action="store_true",
                   help="deliver the models kept while the sweep ran (artifacts: {keep: K}): load them, train nothing")
    p.add_argument("--out", default="reports", help="models go to OUT/STUDY/best/ (default reports/)")
    p.add_argument("--predict", metavar="TEST_CSV", help="unlabelled test CSV to predict (Kaggle layout)")
    p.add_argument("--submission", metavar="OUT_CSV", help="write predictions as a submission CSV")
    p.add_argument("--id-column", default=None, help="id column of the test CSV and submission (default: the sweep's, 'id')")
    p.add_argument("--label-column", default="label", help="prediction column of the submission (e.g. Category)")
    p.set_defaults(func=cmd_best)


def cmd_best(args: argparse.Namespace) -> int:
    from sweeper.deliver import ensemble_proba, top_trials, write_submission

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
    out_dir = study_dir(spec.name, args.out) / "best"
    got = _stored(args, study, spec, trials, out_dir, id_column) if args.stored else \
        _refit(args, spec, trials, out_dir, id_column)
    groups, classes, (x_labelled, y_labelled), (x_test, ids) = got
    if x_labelled is not None and y_labelled is not None:
        acc = float(np.mean(ensemble_proba(groups, x_labelled).argmax(1) == y_labelled))
        single = float(np.mean(ensemble_proba(groups[:1], x_labelled).argmax(1) == y_labelled))
        what = f"ensemble of {len(groups)}" if len(groups) > 1 else "best model"
        print(f"test accuracy ({what}): {acc:.4f}" + (f"; best single {single:.4f}" if len(groups) > 1 else ""))
    else:
        print("test accuracy: n/a (this dataset has no labelled test set)")
    if args.submission:
        if x_test is None:
            raise SweeperError("--submission: no test images to predict; pass --predict TEST_CSV "
                               "(or give data.test_path in the sweep file)")
        labels = np.array(classes)[ensemble_proba(groups, x_test).argmax(1)]
        labels = [int(v) if v.lstrip("-").isdigit() else v for v in labels]
        write_submission(args.submission, ids, np.array(labels, dtype=object), id_column, args.label_column)
        print(f"submission: {args.submission} ({len(ids)} rows)", file=sys.stderr)
    return 0


# Models per trial, class names, the labelled test images (x, y) and the images to predict (x, ids).
Delivered = tuple[list[list[Any]], Sequence[str], tuple[Any, Any], tuple[Any, Any]]


def _refit(args: argparse.Namespace, spec: Any, trials: list[Any], out_dir: Path, id_column: str) -> Delivered:
    """Each trial trained again on every labelled image (train + validation) and saved."""
    from sweeper.deliver import read_test_csv, refit
    from sweeper.train.data import load_dataset
    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()
    ds = load_dataset(spec.data)
    if args.predict:  # read after the dataset, which gives the image shape
        x_test, ids = read_test_csv(args.predict, ds.shape, ds.pixel_divisor, id_column)
    else:
        x_test, ids = ds.x_test, ds.test_ids
    groups = []
    for t in trials:
        fitted = refit(spec, ds, t, out_dir)
        print(f"trial {t.number} (validation {spec.metric} {first_value(t):.4f}) refit on {len(ds.y)} images: {fitted.path}")
        groups.append([fitted.model])
    return groups, ds.classes, (ds.x_test, ds.y_test), (x_test, ids)


def _stored(args: argparse.Namespace, study: Any, spec: Any, trials: list[Any], out_dir: Path,
            id_column: str) -> Delivered:
    """Each trial's models kept while the sweep ran (one per fit: k-fold folds average), copied
    to OUT; nothing is trained, and the training data is not read (test images are, when asked)."""
    from sweeper.deliver import load_kept, read_test_csv
    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()
    groups, found = [], []
    for t in trials:
        kept, models, paths = load_kept(study, spec, t.number, out_dir)
        print(f"trial {t.number} (validation {spec.metric} {first_value(t):.4f}): {len(models)} kept model(s) "
              f"loaded, nothing trained: {', '.join(map(str, paths))}")
        groups.append(models)
        found.append(kept)
    shape, divisor, classes = tuple(found[0].shape), found[0].pixel_divisor, found[0].classes
    labelled: tuple[Any, Any] = (None, None)
    x_test = ids = None
    if spec.data.dataset != "csv":  # a shipped dataset: its own test split, if it has one
        from sweeper.train.data import load_dataset

        ds = load_dataset(spec.data)
        labelled, (x_test, ids) = (ds.x_test, ds.y_test), (ds.x_test, ds.test_ids)
    elif spec.data.test_path and not args.predict:  # a CSV study's test images: its training CSV is not read
        x_test, ids = read_test_csv(spec.data.test_path, shape, divisor, id_column)
    if args.predict:
        x_test, ids = read_test_csv(args.predict, shape, divisor, id_column)
    return groups, classes, labelled, (x_test, ids)
