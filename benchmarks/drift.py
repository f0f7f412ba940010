"""Drift of a long sequential sweep: does a trial get slower, or the process bigger, over time?

Runs ``--trials`` (default 200) tiny Keras trials one after another through ``sweeper.worker.loop.work``
with the real Keras evaluator in this one process: an mlp (units 8) on 300 rows of ``digits``,
1 epoch, batch 64, holdout 0.2, a random search over the learning rate, in a temporary SQLite
file. With sweeper's default ``compute.reuse_models: true`` every trial reuses one traced model
(sweeper/train/reuse.py); ``--no-reuse`` builds and traces a new model per trial. After each trial an
``on_trial`` callback records the time and the process RSS (psutil). Before that, an untimed
2-trial warm-up sweep (own store, same model structure) pays for imports and first graphs.

Per-trial time is measured two ways:
  * trial: the stored ``datetime_start -> datetime_complete`` (claim/ask to tell);
  * loop: the interval between consecutive ``on_trial`` callbacks, i.e. one whole iteration of
    ``work()`` including its bookkeeping (reaping, progress, claiming) before and after the trial.

Goals: mean time of the last 20 trials / first 20 trials <= 1.1; RSS growth <= 100 MB
(RSS after the last trial minus RSS after the first).

``--what-if single-gc,purge-gradients`` patches this process (not the sources) to try two
proposed changes: see ``WHAT_IF`` in benchmarks/_common.py.

Run from the repository root:
    .venv/bin/python benchmarks/drift.py               # 200 trials, about 6-8 minutes on 2 cores
    .venv/bin/python benchmarks/drift.py --trials 60   # shorter
    .venv/bin/python benchmarks/drift.py --trials 60 --what-if single-gc,purge-gradients
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402
from sweeper.config.spec import SweepSpec  # noqa: E402

WINDOW = 20


def sweep_spec(name: str, trials: int, rows: int, epochs: int, reuse: bool = True) -> SweepSpec:
    return common.make_spec(
        name=name,
        data={"dataset": "digits", "limit": rows},
        method="random",
        trials=trials,
        params={"optimizer__learning_rate": {"low": 1e-3, "high": 1e-2, "log": True}},
        training={"model__units": 8, "epochs": epochs, "batch_size": 64},
        validation={"holdout": 0.2},
        compute={"reuse_models": reuse},
    )


def run(spec: SweepSpec, url: str) -> tuple[list[float], list[float], list[float]]:
    """Drive one sweep; returns (trial seconds, loop-iteration seconds, RSS MB after each trial)."""
    from optuna.trial import TrialState

    from sweeper.worker import loop
    from sweeper.search.strategy import strategy_for
    from sweeper.store.progress import Progress
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import create_or_load
    from sweeper.store.trials import worker_salt
    study = create_or_load(spec, make_storage(url))
    study.sampler = strategy_for(spec).sampler(worker_salt(study, 0))
    stamps: list[float] = []
    rss: list[float] = []

    def on_trial(prog: Progress) -> None:
        # work() calls this before a trial trains (the progress bar shows it running) and again
        # after it is stored: an iteration ends when the finished count grows.
        if prog.finished <= len(stamps):
            return
        stamps.append(time.perf_counter())
        rss.append(common.rss_mb())
        if len(stamps) % 20 == 0:
            print(f"  {len(stamps)} trials, {rss[-1]:.0f} MB", flush=True)

    t0 = time.perf_counter()
    loop.work(study, spec, loop.for_spec(spec), on_trial=on_trial)
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    iterations = [b - a for a, b in zip([t0, *stamps], stamps)]
    return common.trial_durations_s(trials), iterations, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--rows", type=int, default=300, help="digits rows used (data limit, default 300)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--no-reuse", action="store_true",
                    help="compute.reuse_models: false (a new model and graph every trial)")
    ap.add_argument("--what-if", default="", help=f"comma-separated patches to try: {', '.join(common.WHAT_IF)}")
    args = ap.parse_args()
    what_if = [w for w in args.what_if.split(",") if w]
    common.apply_what_if(what_if)
    if args.trials < 2 * WINDOW:
        ap.error(f"--trials must be >= {2 * WINDOW}")
    common.quiet_optuna()
    load0 = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="sweeper-drift-") as folder:
        run(sweep_spec("warm-up", 2, args.rows, args.epochs, not args.no_reuse), common.sqlite_url(folder, "warm-up"))
        print(f"warm-up done, RSS {common.rss_mb():.0f} MB; running {args.trials} trials", flush=True)
        trial_s, loop_s, rss = run(sweep_spec("drift", args.trials, args.rows, args.epochs, not args.no_reuse),
                                   common.sqlite_url(folder, "drift"))

    n = len(rss)
    rows = []
    for label, series in (("trial (stored start->complete)", trial_s), ("loop iteration (on_trial gaps)", loop_s)):
        first, last = common.mean(series[:WINDOW]), common.mean(series[-WINDOW:])
        rows.append([label, first, last, last / first, "<= 1.1", "met" if last / first <= 1.1 else "NOT met"])
    common.print_table(
        f"drift: {n} trials, mlp units 8 on digits[:{args.rows}], {args.epochs} epoch(s), SQLite, one process, "
        + f"reuse_models {'off' if args.no_reuse else 'on'}"
        + (f"; what-if: {', '.join(what_if)}" if what_if else ""),
        ["time per trial", f"first {WINDOW} mean s", f"last {WINDOW} mean s", "last/first", "goal", "status"],
        rows,
    )
    from sweeper.train.runtime import FLUSH_EVERY

    # One slow trial in a window is a spike, not drift: the reused steps compile again after the
    # kernel-cache flush sweeper makes every FLUSH_EVERY fits (sweeper/train/runtime.py).
    print(f"slowest trial in the first / last {WINDOW}: {max(trial_s[:WINDOW]):.3f} / {max(trial_s[-WINDOW:]):.3f} s; "
          f"median {statistics.median(trial_s[:WINDOW]):.3f} / {statistics.median(trial_s[-WINDOW:]):.3f} s "
          f"(kernel cache flushed every {FLUSH_EVERY} fits)")

    marks = sorted({i for i in (1, 20, 100, 200) if i <= n} | {n})
    growth = rss[-1] - rss[0]
    common.print_table(
        "RSS after trial k (MB)",
        [*(f"k={k}" for k in marks), "growth 1->last", "growth 20->last", "goal", "status"],
        [[*(rss[k - 1] for k in marks), growth, rss[-1] - rss[min(WINDOW, n) - 1], "<= 100 MB",
          "met" if growth <= 100 else "NOT met"]],
    )

    tenth = max(n // 10, 1)
    buckets = [(i, min(i + tenth, n)) for i in range(0, n, tenth)]
    common.print_table(
        "curve by tenth of the sweep",
        ["trials", "trial mean s", "loop mean s", "loop - trial s", "RSS end MB"],
        [[f"{a + 1}-{b}", common.mean(trial_s[a:b]), common.mean(loop_s[a:b]),
          common.mean(loop_s[a:b]) - common.mean(trial_s[a:b]), rss[b - 1]] for a, b in buckets],
    )
    print(common.load_note(load0))


if __name__ == "__main__":
    main()
