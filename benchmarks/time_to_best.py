"""Time to the best: the notebook-A grid's space searched by sweeper (TPE, Hyperband pruner, fused
packs, ``stop:``; ``sweeps/notebook_mlp_tpe.yaml``) against scikit-learn ``GridSearchCV`` over the
full 96-point grid, in one run (goal: sweeper's whole process at most 0.05 of GridSearchCV's,
its best mean CV accuracy within 0.3 points of the grid's best, in at least 4 of 5 sampler seeds).

Each side runs as a process of its own and is timed whole, from start to exit: imports,
TensorFlow's start-up, data loading and (sweeper) the study store included. The GridSearchCV
side is ``vs_gridsearch.notebook_way`` (the notebook's ``GridSearchCV(KerasClassifier, cv=3)``,
sequential, TensorFlow set up as a sweeper worker has it). The sweep is ``sweeper run``'s own
in-process path (``journeys.open_run`` + ``work_here``) on a fresh SQLite store per seed. With
``seeding: scikeras`` a configuration scores in the sweep exactly what GridSearchCV scores it
(same folds, same seeds: ``vs_gridsearch.py`` checks 96 of 96 equal), so the two bests compare
like for like. The sweep file's sampler is seeded from its ``seed``, which also seeds every fit;
the sampler seed is varied through the worker index (the salt of a fresh study's sampler), which
changes nothing else.

    .venv/bin/python benchmarks/time_to_best.py              # 5 sampler seeds + the full grid (20+ min here)
    .venv/bin/python benchmarks/time_to_best.py --seeds 3
    .venv/bin/python benchmarks/time_to_best.py --quick      # smoke run: 4 points, 2 epochs, 2 seeds
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SWEEP = ROOT / "sweeps" / "notebook_mlp_tpe.yaml"
GOAL_RATIO = 0.05
GOAL_POINTS = 0.3
QUICK = {  # both sides: 4 points, 2 epochs (a smoke run of the whole script)
    "batch_size": [1024], "epochs": [2], "optimizer": ["adam"], "optimizer__learning_rate": [0.001, 0.01],
    "model__batchnorm": [True, False], "model__dropout": [0.2],
}
QUICK_SETS = ["params=" + json.dumps(QUICK), "trials=4", "stop.patience=3", "pruner.max_resource=2",
              "sampler.n_startup_trials=2"]


def child_sweep(url: str, salt: int, sets: list[str]) -> None:
    """One sweep, as ``sweeper run`` works it in its own process, with sampler salt ``salt``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _common import quiet_optuna

    from sweeper.config.spec import load_spec
    from sweeper.worker import journeys

    quiet_optuna()  # as the sweeper command has it
    spec = load_spec(SWEEP, sets)
    study = journeys.open_run(spec, url)
    journeys.work_here(study, spec, url, index=salt)


def child_grid(grid: dict[str, list[Any]], out: str) -> None:
    """GridSearchCV over ``grid`` (vs_gridsearch.notebook_way); its scores written to ``out``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from vs_gridsearch import notebook_way

    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()  # as a sweeper worker has it (vs_gridsearch.warm_up does the same)
    _, scores = notebook_way(grid)
    Path(out).write_text(json.dumps(scores))


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - t0


def sweep_side(tmp: Path, salt: int, sets: list[str]) -> dict[str, Any]:
    url = f"sqlite:///{tmp / f'sweep-{salt}.db'}"
    cmd = [sys.executable, __file__, "--child-sweep", url, str(salt)] + [a for s in sets for a in ("--set", s)]
    wall = timed(cmd)
    from _common import quiet_optuna

    quiet_optuna()
    from sweeper.config.spec import load_spec
    from sweeper.store.progress import progress
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import load

    study, spec = load(load_spec(SWEEP, sets).name, make_storage(url))
    prog = progress(study, spec)
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    top = max(done, key=lambda t: t.value)
    return {"wall": wall, "best": float(top.value), "params": top.params, "text": prog.text(), "epochs": sum(len(t.intermediate_values) for t in study.get_trials())}


def picked(params: dict[str, Any], grid: dict[str, list[Any]]) -> dict[str, Any]:
    """A sweep trial's params as GridSearchCV names its points (the grid's keys only)."""
    return {k: v for k, v in params.items() if k in grid}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="sampler seeds (worker salts 0..N-1; default 5)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 4 points, 2 epochs, 2 seeds")
    ap.add_argument("--child-sweep", nargs=2, metavar=("URL", "SALT"), help=argparse.SUPPRESS)
    ap.add_argument("--child-grid", nargs=2, metavar=("GRID_JSON", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--set", action="append", default=[], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_sweep:
        return child_sweep(args.child_sweep[0], int(args.child_sweep[1]), args.set)
    if args.child_grid:
        return child_grid(json.loads(args.child_grid[0]), args.child_grid[1])

    import yaml

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from vs_gridsearch import GRIDS, _top, config_key

    sets = QUICK_SETS if args.quick else []
    seeds = 2 if args.quick and args.seeds == 5 else args.seeds
    grid = QUICK if args.quick else GRIDS["full"]
    searched = {k: v for k, v in yaml.safe_load(SWEEP.read_text())["params"].items() if len(v) > 1}
    assert args.quick or searched == grid, "the sweep file's space is not vs_gridsearch's full grid"
    n = 1
    for values in grid.values():
        n *= len(values)
    load0 = os.getloadavg()[0]
    print(f"time to best: {SWEEP.relative_to(ROOT)} (TPE, Hyperband, fused packs, stop) vs GridSearchCV over "
          f"{n} points x 3 folds, mnist5k; {seeds} sampler seed(s){'; --quick' if args.quick else ''}", flush=True)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for salt in range(seeds):
            r = sweep_side(Path(tmp), salt, sets)
            runs.append(r)
            print(f"  sweep seed {salt}: {r['wall']:7.1f} s  best {r['best']:.4f}  {r['text']}; "
                  f"{r['epochs']} trial-epochs reported", flush=True)
        out = Path(tmp) / "grid.json"
        grid_wall = timed([sys.executable, __file__, "--child-grid", json.dumps(grid), str(out)])
        scores = json.loads(out.read_text())
    g_key, g_best, _ = _top(scores)
    print(f"  GridSearchCV     : {grid_wall:7.1f} s  best {g_best:.4f}  {g_key}")
    met = 0
    for salt, r in enumerate(runs):
        ratio, gap = r["wall"] / grid_wall, 100 * (g_best - r["best"])
        ok = ratio <= GOAL_RATIO and gap <= GOAL_POINTS + 1e-9
        met += ok
        print(f"  seed {salt}: time ratio {ratio:.3f}, {gap:+.2f} points under the grid's best "
              f"(GridSearchCV scores its pick {scores.get(config_key(picked(r['params'], grid)), float('nan')):.4f}): "
              f"{'met' if ok else 'not met'}")
    print(f"goal (ratio <= {GOAL_RATIO}, within {GOAL_POINTS} points) met in {met} of {len(runs)} seeds "
          f"(needed: 4 of 5); machine: {os.cpu_count()} CPUs, 1-min load {load0:.2f} at start, "
          f"{os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
