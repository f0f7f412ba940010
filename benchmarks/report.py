"""Report on a large study: build time (goal <= 5 s) and time to first render in headless
Chromium (goal <= 3 s) for a synthetic study of 10,000 trials (3% failed, 5% pruned).

    .venv/bin/python benchmarks/report.py [--trials 10000] [--store PATH] [--fresh] [--best-of 3]
    .venv/bin/python benchmarks/report.py --objectives 2     # 2,000 trials, accuracy x n_params (Pareto front)

The synthetic study is written into a SQLite store with optuna.create_trial + add_trials (about
20 ms a trial, Optuna's own cost) and kept at --store for the next run; --fresh rewrites it.
Timed separately: reading the store (Optuna), building the report from the loaded study
(cold: first build in this process, imports included; warm: best of --best-of builds), and in
Chromium: the load event, the first render (HiPlot holds every row and has drawn lines on its
canvas) and a full redraw of every line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # tests/support: synthetic studies

from support import synthetic  # noqa: E402

from benchmarks._common import print_table, quiet_optuna  # noqa: E402
from sweeper.report import write_report  # noqa: E402
from sweeper.store.storage import make_storage
from sweeper.store.studies import load

PARAMS = {
    "batch_size": [32, 64, 128, 256],
    "optimizer": ["adam", "rmsprop", "sgd"],
    "optimizer__learning_rate": {"low": 1e-4, "high": 1e-1, "log": True},
    "model__batchnorm": [True, False],
    "model__dropout": {"low": 0.0, "high": 0.5},
}


OBJECTIVES = [{"metric": "accuracy"}, {"metric": "n_params"}]  # --objectives 2


def ensure_store(path: Path, n: int, fresh: bool, objectives: int = 1) -> tuple[str, str, float | None]:
    name = f"bench-report-{n}" + (f"-{objectives}obj" if objectives > 1 else "")
    url = f"sqlite:///{path}"
    if path.exists() and not fresh:
        return url, name, None
    path.unlink(missing_ok=True)
    extra = {} if objectives == 1 else {
        "objective": OBJECTIVES[:objectives], "params": {**PARAMS, "model__units": [16, 32, 64, 128, 256]}}
    spec = synthetic.make_spec(name, **{"params": PARAMS, **extra}, method="random", trials=n)
    t0 = time.perf_counter()
    synthetic.make_study(spec, url, n, fail_rate=0.03, prune_rate=0.05, epochs=10)
    return url, name, time.perf_counter() - t0


def browser_times(page: Path, n: int) -> dict[str, float]:
    from support.browser import Browser, find_chromium, is_blank

    from sweeper.report import hiplot_page as hp

    if not find_chromium():
        print("chromium missing (scripts/install_browser.sh): no render times", file=sys.stderr)
        return {}
    with Browser(timeout_s=60) as b:
        t0 = time.perf_counter()
        loaded = b.open(page.as_uri())
        b.wait_for(hp.READY_JS, timeout_s=60, poll_s=0.01)
        first = time.perf_counter() - t0
        b.evaluate(hp.RECOUNT_JS)
        redraw = b.wait_for(f"({hp.COUNT_JS}).drawn_rows >= {n}", timeout_s=120, poll_s=0.02)
        counts = b.evaluate(hp.COUNT_JS)
        blank = is_blank(b.screenshot())
        b.settle(0.2)
    print(f"browser: {counts['rows']} rows in HiPlot, {counts['drawn_rows']} lines drawn, "
          f"table '{counts['table_info']}', JS errors {len(b.errors.all())}, blank screenshot {blank}")
    return {"load event": loaded, "first render": first, "full redraw": redraw}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=None, help="default 10,000 (2,000 with --objectives 2)")
    ap.add_argument("--objectives", type=int, choices=(1, 2), default=1,
                    help="2: accuracy and n_params, the report with its Pareto front")
    ap.add_argument("--store", type=Path, default=None, help="SQLite file to keep the study in")
    ap.add_argument("--fresh", action="store_true", help="write the synthetic study again")
    ap.add_argument("--best-of", type=int, default=3)
    args = ap.parse_args()
    quiet_optuna()
    args.trials = args.trials or (10_000 if args.objectives == 1 else 2_000)
    store = args.store or Path(tempfile.gettempdir()) / f"sweeper-bench-report-{args.trials}-{args.objectives}.db"
    url, name, wrote = ensure_store(store, args.trials, args.fresh, args.objectives)
    if wrote is not None:
        print(f"wrote {args.trials} synthetic trials into {store} in {wrote:.1f} s")

    t0 = time.perf_counter()
    study, spec = load(name, make_storage(url, heartbeat=None, must_exist=True))
    study.get_trials(deepcopy=False)
    read_s = time.perf_counter() - t0

    out = Path(tempfile.mkdtemp(prefix="sweeper-bench-report-"))
    t0 = time.perf_counter()
    page = write_report(study, spec, out)
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(max(1, args.best_of)):
        t0 = time.perf_counter()
        write_report(study, spec, out)
        warm.append(time.perf_counter() - t0)
    size_mb = page.stat().st_size / 2**20

    rows = [
        ["read store (Optuna load)", read_s, ""],
        ["build report, cold", cold, "<= 5 s"],
        [f"build report, warm (best of {len(warm)})", min(warm), "<= 5 s"],
    ]
    for label, secs in browser_times(page, args.trials).items():
        rows.append([f"chromium: {label}", secs, "<= 3 s" if label == "first render" else ""])
    print_table(f"report of {args.trials} trials ({size_mb:.1f} MiB page, {page})", ["step", "seconds", "goal"], rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
