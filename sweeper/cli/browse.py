"""``ls``, ``show``, ``export``: read the store, never write it."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any

from sweeper.cli.common import add_storage
from sweeper.cli.pareto import infeasible_lines, pareto_lines
from sweeper.errors import SweeperError
from sweeper.store import results, warm
from sweeper.store.keys import (
    KEPT_ATTR,
    PLACEMENT_ATTR,
    REMOVED_PREFIX,
    REVISIONS_ATTR,
    SPEC_ATTR,
)
from sweeper.store.placement import placement_text
from sweeper.store.progress import Outcome, stored_tally, study_outcomes
from sweeper.store.storage import make_storage
from sweeper.store.studies import load


def register(sub: Any) -> None:
    p = sub.add_parser("ls", help="list the studies in a store")
    add_storage(p)
    p.set_defaults(func=cmd_ls)

    p = sub.add_parser("show", help="top trials of a study, its progress and failures")
    p.add_argument("study")
    add_storage(p)
    p.add_argument("-k", "--top", type=int, default=10, help="how many trials to list (default 10)")
    p.add_argument("--trial", type=int, metavar="N", help="everything stored about trial N (whole error text)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("export", help="write a study's trials as JSON or CSV, or into TensorBoard or MLflow, "
                                      "or its kept models as .keras files")
    p.add_argument("study")
    add_storage(p)
    p.add_argument("--format", choices=("json", "csv", "tensorboard", "mlflow"), default=None,
                   help="json, csv (a file), tensorboard (HParams runs in --out DIR), mlflow (runs at --tracking-uri)")
    p.add_argument("--all", action="store_true",
                   help="also trials without a score (failed, pruned, running, queued), with a state column")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.add_argument("--out", metavar="DIR", help="tensorboard: the log folder (one run per trial; replaced on re-export)")
    p.add_argument("--tracking-uri", metavar="URI", help="mlflow: the tracking URI (file:///DIR, http://HOST:PORT, ...)")
    p.add_argument("--experiment", metavar="NAME", default="sweeper", help="mlflow: the experiment (default: sweeper)")
    p.add_argument("--models", metavar="DIR", help="write the kept models (artifacts: {keep: K}) to DIR as "
                   "trial-N.keras (trial-N-fold-S.keras, ... per fit); existing files are not replaced without --force")
    p.add_argument("--force", action="store_true", help="--models: replace files of the same names in DIR")
    p.set_defaults(func=cmd_export)


def cmd_ls(args: argparse.Namespace) -> int:
    storage = make_storage(args.storage, must_exist=True, readonly=True)
    studies = sorted(storage.get_all_studies(), key=lambda s: s.study_name)
    if not studies:
        print("no studies")
        return 0
    table = []
    for s in studies:
        sid = storage.get_study_id_from_name(s.study_name)
        trials = storage.get_all_trials(sid, deepcopy=False)
        # Counted as show, the report and serve count them (store.progress decides).
        attrs = storage.get_study_user_attrs(sid)
        prog, _ = stored_tally(trials, attrs.get(SPEC_ATTR), s.study_name, s.directions[0].name.lower(),
                               attrs.get(REVISIONS_ATTR))
        last = max((t.datetime_complete or t.datetime_start for t in trials if t.datetime_start), default=None)
        table.append({
            "study": s.study_name,
            "trials": len(trials),
            "outcomes": prog.text(),
            "best": "" if prog.best is None else f"{prog.best:.4f}",
            "last update": "" if last is None else last.strftime("%Y-%m-%d %H:%M:%S"),
        })
    _print_table(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    storage = make_storage(args.storage, must_exist=True, readonly=True)
    study, spec = load(args.study, storage)
    if args.trial is not None:
        return _show_trial(study, args.trial)
    prog, found = study_outcomes(study, spec)
    print(f"study {spec.name}: {spec.method} on {spec.data.dataset} with {spec.model}; {prog.text()}")
    if warm.summary(study):
        print(f"warm start: {warm.summary(study)}")
    rows = {r["number"]: r for r in results.rows(study)}
    # One row per configuration: a duplicate is listed under its twin.
    scored = [rows[o.number] for o in found if o.kind == "complete" and rows[o.number]["mean_test_score"] is not None]
    scored.sort(key=lambda r: r["mean_test_score"], reverse=spec.direction == "maximize")
    top = scored[:args.top]
    if top:
        cols = ["number"] + [f"param_{p}" for p in spec.params] + [
            "mean_test_score", "std_test_score", "mean_fit_time", "epochs_run"]
        cols += ["warm_start"] if any("warm_start" in r for r in top) else []  # where an earlier trial came from
        # A parameter absent from a trial (its condition failed) shows as '-', never as a value.
        _print_table([{c.removeprefix("param_"): _fmt(r.get(c)) if c in r or not c.startswith("param_") else "-"
                       for c in cols} for r in top])
    for line in pareto_lines(spec, list(rows.values())) + infeasible_lines(study, spec):  # several objectives
        print(line)
    _print_outcomes(spec.name, found)
    return 0


SHOWN_DUPLICATES = 10


def _print_outcomes(name: str, found: list[Outcome]) -> None:
    """Failed trials with their reasons, interrupted ones with their re-runs, duplicates with
    their twins (the words of store.progress)."""
    failed = [o for o in found if o.kind == "failed"]
    if failed:
        print(f"\nfailed ({len(failed)}):")
        for o in failed:
            print(f"  trial {o.number}: {_first_line(name, o)}")
    stopped = [o for o in found if o.kind == "interrupted"]
    if stopped:
        print(f"\ninterrupted and re-run ({len(stopped)}, not counted):")
        for o in stopped:
            again = f"re-run as trial {o.link}" if o.link is not None else "not queued again yet (sweeper resume does)"
            print(f"  trial {o.number}: {_first_line(name, o)}; {again}")
    suspects = [o for o in found if o.kind in ("running", "queued") and o.reason]
    if suspects:
        print(f"\nsuspects ({len(suspects)}: each runs alone next, and only a death then counts against it):")
        for o in suspects:
            print(f"  trial {o.number} ({o.kind}): {_first_line(name, o)}")
    dups = [o for o in found if o.kind == "duplicate"]
    if dups:
        print(f"\nduplicate ({len(dups)}, each a repeat of another trial's params):")
        for o in dups[:SHOWN_DUPLICATES]:
            print(f"  trial {o.number}: duplicate of trial {o.link}")
        if len(dups) > SHOWN_DUPLICATES:
            print(f"  and {len(dups) - SHOWN_DUPLICATES} more")


def _first_line(name: str, o: Outcome) -> str:
    lines = (o.reason or "no reason stored").splitlines() or ["no reason stored"]
    more = f" [... sweeper show {name} --trial {o.number}]" if len(lines) > 1 else ""
    return lines[0] + more


def _show_trial(study: Any, number: int) -> int:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise SweeperError(f"--trial: study {study.study_name!r} has no trial {number} (trials 0 to {len(trials) - 1})")
    t = trials[number]
    values = ", ".join(_fmt(v) for v in t.values) if t.values else ""  # one per objective
    print(f"trial {t.number}: {t.state.name.lower()}, value{'s' if len(t.values or ()) > 1 else ''} {values}")
    print(f"params: {json.dumps(t.params, default=str)}")
    for key, value in sorted(t.user_attrs.items()):
        if key == PLACEMENT_ATTR and isinstance(value, dict):
            print(f"{key}: {placement_text(value)}")
        elif key != "error":
            print(f"{key}: {json.dumps(value, default=str)}")
    if REMOVED_PREFIX + str(t.number) in study.user_attrs:
        print(f"{KEPT_ATTR}: removed (pushed out of the trials whose models are kept, or its files never "
              "all recorded: its worker died or its upload failed)")
    if "error" in t.user_attrs:
        print("error:")
        print(t.user_attrs["error"])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if args.models is not None:
        return _export_models(args)
    if args.force:
        raise SweeperError("--force: only with --models DIR")
    args.format = args.format or "json"
    if args.format == "tensorboard" and not args.out:
        raise SweeperError("--format tensorboard needs --out DIR")
    if args.format == "mlflow" and not args.tracking_uri:
        raise SweeperError("--format mlflow needs --tracking-uri URI")
    storage = make_storage(args.storage, must_exist=True, readonly=True)
    study, spec = load(args.study, storage)
    if args.format in ("tensorboard", "mlflow"):
        return _export_tracker(args, study, spec)
    scored = None if args.all else ("complete",)  # the notebook's own code expects a score in every row
    if args.format == "json":
        records = [r for r in results.export_records(study) if scored is None or r["state"] in scored]
        text = json.dumps(records, indent=2, default=str)
    else:
        rows = [r for r in results.rows(study) if scored is None or r["state"] in scored]
        buf = io.StringIO()
        fields: list[str] = []
        for r in rows:
            fields += [k for k in r if k not in fields]
        # The param_ columns together, in the sweep's order; a parameter absent from a trial (its
        # condition failed) leaves its cell empty.
        names = [f"param_{p}" for p in spec.params if f"param_{p}" in fields]
        fields = [f for f in fields if not f.startswith("param_")]
        fields[2:2] = names + [f for r in rows for f in r if f.startswith("param_") and f not in names]
        fields = list(dict.fromkeys(fields))
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
        text = buf.getvalue()
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise SweeperError(f"{args.output}: cannot write ({exc.strerror})") from None
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _export_models(args: argparse.Namespace) -> int:
    """``export STUDY --models DIR``: the kept models as .keras files (store/artifacts.export_models)."""
    from pathlib import Path

    from sweeper.store.artifacts import export_models

    clash = [o for o, v in (("--format", args.format), ("--output", args.output), ("--out", args.out),
                            ("--tracking-uri", args.tracking_uri), ("--all", args.all)) if v]
    if clash:
        raise SweeperError(f"--models writes the kept models only; leave out {', '.join(clash)}")
    storage = make_storage(args.storage, must_exist=True, readonly=True)
    study, spec = load(args.study, storage)
    written = export_models(study, spec, Path(args.models), args.force)
    for number, paths in written:
        print(f"trial {number}: {', '.join(str(p) for p in paths)}")
    print(f"wrote {sum(len(p) for _, p in written)} kept model(s) of {len(written)} trial(s) to {args.models}",
          file=sys.stderr)
    return 0


def _export_tracker(args: argparse.Namespace, study: Any, spec: Any) -> int:
    if args.format == "tensorboard":
        from sweeper.report import tensorboard_export

        n = tensorboard_export.export(study, spec, args.out)
        print(f"wrote {n} HParams run(s) of {spec.name} to {args.out} (tensorboard --logdir {args.out})")
        return 0
    from sweeper.report import mlflow_export

    parent, n = mlflow_export.export(study, spec, args.tracking_uri, args.experiment)
    print(f"exported {spec.name} to MLflow experiment {args.experiment!r} at {args.tracking_uri}: "
          f"parent run {parent}, {n} trial run(s)")
    return 0


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _print_table(rows: list[dict[str, Any]]) -> None:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols))
