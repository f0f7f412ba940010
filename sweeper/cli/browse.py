"""``ls``, ``show``, ``export``: read the store, never write it."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any

from sweeper.cli.common import add_storage
from sweeper.errors import SweeperError
from sweeper.store import results
from sweeper.store.keys import RETRY_OF_ATTR, RETRY_REASON_ATTR
from sweeper.store.progress import progress
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

    p = sub.add_parser("export", help="write a study's trials as JSON or CSV")
    p.add_argument("study")
    add_storage(p)
    p.add_argument("--format", choices=("json", "csv"), default="json")
    p.add_argument("--all", action="store_true",
                   help="also trials without a score (failed, pruned, running, queued), with a state column")
    p.add_argument("-o", "--output", help="file to write (default: standard output)")
    p.set_defaults(func=cmd_export)


def cmd_ls(args: argparse.Namespace) -> int:
    import optuna

    storage = make_storage(args.storage, must_exist=True, readonly=True)
    summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
    if not summaries:
        print("no studies")
        return 0
    table = []
    for s in summaries:
        study = optuna.load_study(study_name=s.study_name, storage=storage)
        trials = study.get_trials(deepcopy=False)
        states: dict[str, int] = {}
        for t in trials:
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        done = [t.value for t in trials if t.value is not None and t.state.name == "COMPLETE"]
        maximize = study.direction.name == "MAXIMIZE"
        best = (max(done) if maximize else min(done)) if done else None
        last = max((t.datetime_complete or t.datetime_start for t in trials if t.datetime_start), default=None)
        table.append({
            "study": s.study_name,
            "trials": len(trials),
            "states": " ".join(f"{k}={v}" for k, v in sorted(states.items())),
            "best": "" if best is None else f"{best:.4f}",
            "last update": "" if last is None else last.strftime("%Y-%m-%d %H:%M:%S"),
        })
    _print_table(table)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    storage = make_storage(args.storage, must_exist=True, readonly=True)
    study, spec = load(args.study, storage)
    if args.trial is not None:
        return _show_trial(study, args.trial)
    prog = progress(study, spec)
    print(f"study {spec.name}: {spec.method} on {spec.data.dataset} with {spec.model}; "
          f"{prog.finished}/{prog.budget or '?'} finished ({prog.complete} complete, {prog.pruned} pruned, "
          f"{prog.failed} failed, {prog.running} running, {prog.waiting} waiting)")
    top = results.top(study, args.top, spec.direction == "maximize")
    if top:
        cols = ["number"] + [k for k in top[0] if k.startswith("param_")] + [
            "mean_test_score", "std_test_score", "mean_fit_time", "epochs_run"]
        _print_table([{c.removeprefix("param_"): _fmt(r.get(c)) for c in cols} for r in top])
    failures = [r for r in results.rows(study) if r["state"] == "fail"]
    if failures:
        # A trial failed by Optuna's heartbeat check (worker lost on another host) is finished
        # before sweeper can write its reason on it; the reason is on its re-run.
        retry_reasons = {t.user_attrs[RETRY_OF_ATTR]: t.user_attrs.get(RETRY_REASON_ATTR)
                         for t in study.get_trials(deepcopy=False) if RETRY_OF_ATTR in t.user_attrs}
        again = sum(1 for r in failures if r["retried"])
        print(f"\nfailed trials ({len(failures)}: {len(failures) - again} failed for good, {again} queued again "
              f"and run anew):")
        for r in failures:
            note = " (queued again)" if r["retried"] else ""
            reason = r["error"] or retry_reasons.get(r["number"]) or "no reason stored"
            lines = reason.splitlines()
            more = f" [... sweeper show {spec.name} --trial {r['number']}]" if len(lines) > 1 else ""
            print(f"  trial {r['number']}: {lines[0] if lines else reason}{note}{more}")
    return 0


def _show_trial(study: Any, number: int) -> int:
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise SweeperError(f"--trial: study {study.study_name!r} has no trial {number} (trials 0 to {len(trials) - 1})")
    t = trials[number]
    print(f"trial {t.number}: {t.state.name.lower()}, value {_fmt(t.value)}")
    print(f"params: {json.dumps(t.params, default=str)}")
    for key, value in sorted(t.user_attrs.items()):
        if key != "error":
            print(f"{key}: {json.dumps(value, default=str)}")
    if "error" in t.user_attrs:
        print("error:")
        print(t.user_attrs["error"])
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    storage = make_storage(args.storage, must_exist=True, readonly=True)
    study, _ = load(args.study, storage)
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
