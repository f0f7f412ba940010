"""Overhead of a sweep over a bare Keras loop training the same configurations.

Measures the wall time of N configurations (default 6: an mlp on ``digits``, a grid over
``model__units`` x ``model__dropout``, holdout 0.2) trained

  (a) by sweeper: a real Optuna study in a fresh temporary SQLite file (``make_storage`` +
      ``create_or_load``), driven by ``sweeper.worker.loop.work`` with the sweep's own evaluator
      (scikeras KerasClassifier, per-epoch reports, stored metrics, sweeper's model cache on
      unless ``--no-reuse``; each round's units differ, so no round reuses an earlier one's models);
  (b) by a bare Keras loop: ``build_mlp`` from sweeper/train/models/mlp.py, compiled with the same
      optimizer / loss / metrics, fit on the same stratified train/val split with
      ``validation_data``, same epochs and batch size, same seeds, ``clear_session`` between fits.

Both run in this one process. Before timing: TensorFlow is configured as sweeper does (op
determinism on, for both sides), the dataset is loaded, one untimed warm-up fit is run and one
throw-away SQLite store is opened (import / first-graph / schema code paths). Then ``--repeats``
rounds alternate the order: round 1 bare then sweeper, round 2 sweeper then bare, and so on.
The sweeper figure includes creating its study (schema + queued grid points) in a new file.

Goal: total wall time sweeper / bare <= 1.05.

``--what-if single-gc,purge-gradients`` patches this process (not the sources) to try two
proposed changes: see ``WHAT_IF`` in benchmarks/_common.py. The purge applies to both sides.

Run from the repository root:
    .venv/bin/python benchmarks/overhead.py                      # 6 configs, 5 epochs, 2 rounds
    .venv/bin/python benchmarks/overhead.py --dataset mnist5k --epochs 3 --repeats 1
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common  # noqa: E402
from sweeper.config.spec import SweepSpec  # noqa: E402


@dataclass
class Side:
    """Figures of one side (bare or sweeper) summed over the rounds."""

    name: str
    wall_s: float = 0.0
    trials: int = 0
    trial_s: list[float] = field(default_factory=list)  # one trial, end to end
    fit_s: list[float] = field(default_factory=list)  # build + compile + model.fit
    scores: list[float] = field(default_factory=list)


def sweep_spec(args: argparse.Namespace, name: str, round_: int) -> SweepSpec:
    """The round's grid: units x dropout. Units shift by one per round, so every round's models
    are new graph structures and sweeper's model cache (sweeper/train/reuse.py) cannot carry traced
    models from one round to the next: each round measures a fresh sweep."""
    dropouts = [round(0.1 * i, 1) for i in range(math.ceil(args.configs / 3))]
    return common.make_spec(
        name=name,
        data={"dataset": args.dataset},
        method="grid",
        trials=args.configs,
        params={"model__units": [16 + round_, 32 + round_, 64 + round_], "model__dropout": dropouts},
        training={"optimizer": "adam", "optimizer__learning_rate": 1e-3,
                  "epochs": args.epochs, "batch_size": args.batch_size},
        validation={"holdout": 0.2},
        compute={"reuse_models": not args.no_reuse},
        seed=0,
    )


def bare_fit(spec: SweepSpec, params: dict[str, Any], seed: int) -> tuple[float, float]:
    """One configuration the plain Keras way; returns (build+compile+fit seconds, the scope of
    scikeras' ``est.fit`` that sweeper records as ``fit_time``; final val_accuracy)."""
    import keras

    from sweeper.train.data import load_dataset, splits
    from sweeper.train.models.mlp import build_mlp

    ds = load_dataset(spec.data)
    (tr, va), = splits(spec, ds)
    model_kw = {k[len("model__"):]: v for k, v in params.items() if k.startswith("model__")}
    t0 = time.perf_counter()
    keras.utils.set_random_seed(seed)  # as sweeper (train/reuse.py) seeds before building and fitting
    model = build_mlp({"X_shape_": ds.x.shape, "n_classes_": ds.n_classes}, **model_kw)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=params["optimizer__learning_rate"]),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    keras.utils.set_random_seed(seed)
    hist = model.fit(ds.x[tr], ds.y[tr], validation_data=(ds.x[va], ds.y[va]),
                     epochs=params["epochs"], batch_size=params["batch_size"], verbose=0)
    fit_s = time.perf_counter() - t0
    keras.backend.clear_session()
    return fit_s, float(hist.history["val_accuracy"][-1])


def run_bare(spec: SweepSpec, side: Side) -> None:
    from sweeper.search import space
    points = space.grid_points(spec)[: spec.budget]
    t_start = time.perf_counter()
    for point in points:
        params = space.full_params(spec, point)
        t0 = time.perf_counter()
        fit_s, score = bare_fit(spec, params, space.trial_seed(spec, params))
        side.trial_s.append(time.perf_counter() - t0)
        side.fit_s.append(fit_s)
        side.scores.append(score)
    side.wall_s += time.perf_counter() - t_start
    side.trials += len(points)


def run_sweeper(spec: SweepSpec, folder: str, side: Side) -> None:
    from optuna.trial import TrialState

    from sweeper.worker import loop
    from sweeper.search.strategy import strategy_for
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import create_or_load
    from sweeper.store.trials import worker_salt
    t0 = time.perf_counter()
    study = create_or_load(spec, make_storage(common.sqlite_url(folder, spec.name)))
    study.sampler = strategy_for(spec).sampler(worker_salt(study, 0))
    loop.work(study, spec, loop.for_spec(spec))
    side.wall_s += time.perf_counter() - t0
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    side.trials += len(trials)
    side.trial_s += common.trial_durations_s(trials)
    side.fit_s += [float(t.user_attrs["metrics"]["fit_time"]) for t in trials]
    side.scores += [float(t.value) for t in trials if t.value is not None]


def warm_up(spec: SweepSpec, folder: str) -> None:
    import scikeras.wrappers  # noqa: F401  (import cost is not per-trial)

    from sweeper.search import space
    from sweeper.store.storage import make_storage
    from sweeper.train.data import load_dataset
    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()  # op determinism on for both sides, as sweeper sets it
    load_dataset(spec.data)
    params = space.full_params(spec, space.grid_points(spec)[0])
    bare_fit(spec, params, 0)
    make_storage(common.sqlite_url(folder, "warm-up"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", type=int, default=6, help="configurations per side and round (default 6)")
    ap.add_argument("--dataset", choices=("digits", "mnist5k"), default="digits")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2, help="rounds, alternating which side goes first (default 2)")
    ap.add_argument("--no-reuse", action="store_true", help="sweep with compute.reuse_models: false")
    ap.add_argument("--what-if", default="", help=f"comma-separated patches to try: {', '.join(common.WHAT_IF)}")
    args = ap.parse_args()
    what_if = [w for w in args.what_if.split(",") if w]
    common.apply_what_if(what_if)
    common.quiet_optuna()
    load0 = os.getloadavg()[0]

    bare, sweep = Side("bare keras"), Side("sweeper")
    with tempfile.TemporaryDirectory(prefix="sweeper-overhead-") as folder:
        warm_up(sweep_spec(args, "warm-up", 100), folder)
        for r in range(args.repeats):
            spec = sweep_spec(args, f"overhead-{r}", r)
            order = ("bare", "sweeper") if r % 2 == 0 else ("sweeper", "bare")
            before = {"bare": bare.wall_s, "sweeper": sweep.wall_s}
            for which in order:
                if which == "bare":
                    run_bare(spec, bare)
                else:
                    run_sweeper(spec, folder, sweep)
            print(f"round {r + 1}/{args.repeats} ({' then '.join(order)}): bare {bare.wall_s - before['bare']:.2f}s, "
                  f"sweeper {sweep.wall_s - before['sweeper']:.2f}s, RSS {common.rss_mb():.0f} MB", flush=True)

    rows = [
        [s.name, s.trials, s.wall_s, s.wall_s / max(s.trials, 1), common.mean(s.trial_s),
         common.mean(s.fit_s), common.mean(s.trial_s) - common.mean(s.fit_s), common.mean(s.scores)]
        for s in (bare, sweep)
    ]
    common.print_table(
        f"overhead: {args.configs} configs x {args.repeats} rounds, mlp on {args.dataset}, "
        f"{args.epochs} epochs, batch {args.batch_size}, holdout 0.2 (order: bare first in odd rounds, "
        "sweeper first in even rounds), reuse_models " + ("off" if args.no_reuse else "on")
        + (f"; what-if: {', '.join(what_if)}" if what_if else ""),
        ["side", "trials", "total s", "total/trial s", "trial mean s", "fit mean s*", "non-fit s", "mean val acc"],
        rows,
    )
    ratio = sweep.wall_s / bare.wall_s
    print(f"ratio sweeper/bare (total wall)      : {ratio:.3f}   goal <= 1.05  -> {'met' if ratio <= 1.05 else 'NOT met'}")
    print(f"ratio sweeper/bare (per-trial mean)  : {common.mean(sweep.trial_s) / common.mean(bare.trial_s):.3f}")
    print(f"ratio sweeper/bare (fit* alone)      : {common.mean(sweep.fit_s) / common.mean(bare.fit_s):.3f}")
    print("* fit = build + compile + model.fit (scikeras est.fit, recorded by sweeper as fit_time); "
          "non-fit = trial mean - fit mean")
    print("(trial mean: bare = build+compile+fit+clear_session; sweeper = stored datetime_start -> "
          "datetime_complete; total includes sweeper's study creation and loop bookkeeping)")
    print(common.load_note(load0))


if __name__ == "__main__":
    main()
