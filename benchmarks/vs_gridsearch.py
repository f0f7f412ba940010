"""sweeper against the notebook way, same job, one process run (goal: time ratio <= 0.6 unfused,
<= 0.30 with fused packs on the full grid).

The notebook way (docs/reference_notebooks.md, notebook A): scikit-learn ``GridSearchCV(KerasClassifier, cv=3)``, sequential,
a new model per fit. sweeper: the same grid as a study, same model builder, same epochs, same
data, the same stratified folds (``StratifiedKFold(3, shuffle=True, random_state=42)`` on both
sides), the same seeding (sweeper's ``seeding: scikeras`` seeds each fit as the notebook's
``KerasClassifier(random_state=42)`` does) and TensorFlow set up alike. Prints both wall times,
the ratio, both best scores and on how many configurations the two scores are equal.

    .venv/bin/python benchmarks/vs_gridsearch.py                 # 16-point subset of the notebook-A grid
    .venv/bin/python benchmarks/vs_gridsearch.py --grid full     # all 96 points (about 40 min here)
    .venv/bin/python benchmarks/vs_gridsearch.py --workers 2     # sweeper with 2 single-thread workers
    .venv/bin/python benchmarks/vs_gridsearch.py --fuse 16       # sweeper trains 16 trials per fused pack
    .venv/bin/python benchmarks/vs_gridsearch.py --seeding trial # sweeper seeds each trial its own way
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GRIDS: dict[str, dict[str, list[Any]]] = {
    # The notebook's full grid (96 points).
    "full": {
        "batch_size": [1024, 2048],
        "epochs": [15, 30],
        "optimizer": ["rmsprop", "adam"],
        "optimizer__learning_rate": [0.001, 0.002, 0.01],
        "model__batchnorm": [True, False],
        "model__dropout": [0.2, 0.4],
    },
    # A stated subset: the notebook-A grid at batch 1024, 15 epochs, two learning rates (16 points).
    "small": {
        "batch_size": [1024],
        "epochs": [15],
        "optimizer": ["rmsprop", "adam"],
        "optimizer__learning_rate": [0.001, 0.01],
        "model__batchnorm": [True, False],
        "model__dropout": [0.2, 0.4],
    },
}
SEED = 42


Scores = dict[str, float]  # mean CV accuracy by configuration (canonical JSON of its params)


def config_key(params: dict[str, Any]) -> str:
    return json.dumps({k: str(v) for k, v in params.items()}, sort_keys=True)


def notebook_way(grid: dict[str, list[Any]]) -> tuple[float, Scores]:
    """GridSearchCV over a scikeras KerasClassifier, exactly as the notebook did it."""
    import keras
    from scikeras.wrappers import KerasClassifier
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    from sweeper.config.spec import DataSpec
    from sweeper.train.data import load_dataset
    from sweeper.train.models.mlp import build_mlp

    ds = load_dataset(DataSpec("mnist5k"))
    classes = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam}
    param_grid = {**grid, "optimizer": [classes[o] for o in grid["optimizer"]]}
    clf = KerasClassifier(model=build_mlp, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                          optimizer="adam", verbose=0, random_state=SEED)
    search = GridSearchCV(clf, param_grid, cv=StratifiedKFold(3, shuffle=True, random_state=SEED), n_jobs=1,
                          refit=False)
    t0 = time.perf_counter()
    search.fit(ds.x, ds.y)
    wall = time.perf_counter() - t0
    scores = {}
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        scores[config_key({**params, "optimizer": params["optimizer"].__name__.lower()})] = float(score)
    return wall, scores


def sweeper_way(grid: dict[str, list[Any]], workers: int, fuse: str, seeding: str) -> tuple[float, Scores]:
    import optuna
    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{Path(tmp) / 'bench.db'}"
        sweep = {
            "name": "vs-gridsearch", "data": {"dataset": "mnist5k"}, "model": "mlp", "method": "grid",
            "params": grid, "validation": {"kfold": 3}, "seed": SEED, "seeding": seeding, "storage": store,
            "compute": {"fuse": int(fuse) if fuse.isdigit() else fuse},
        }
        path = Path(tmp) / "sweep.yaml"
        path.write_text(yaml.safe_dump(sweep))
        t0 = time.perf_counter()
        if workers == 1:
            from sweeper.worker import loop
            from sweeper.config.spec import load_spec
            from sweeper.store.storage import make_storage
            from sweeper.store.studies import create_or_load

            spec = load_spec(path)
            study = create_or_load(spec, make_storage(store))
            loop.work(study, spec, loop.for_spec(spec))
        else:
            subprocess.run([sys.executable, "-m", "sweeper", "run", str(path), "--workers", str(workers),
                            "--quiet", "--no-report"], check=True)
        wall = time.perf_counter() - t0
        trials = optuna.load_study(study_name="vs-gridsearch", storage=store).get_trials(deepcopy=False)
        states = Counter(t.state.name.lower() for t in trials)
        packs = Counter(json.dumps((t.user_attrs.get("metrics") or {}).get("model", {}).get("fused"))
                        for t in trials)
        print(f"  sweeper's trials: {dict(states)}; packs (trials in a pack, fits trained as one model): "
              f"{', '.join(f'{n} x {p}' for p, n in sorted(packs.items()))}")
        return wall, {config_key(t.params): float(t.value) for t in trials if t.value is not None}


def _top(scores: Scores) -> tuple[str, float, float]:
    """Best configuration, its score, and its lead over the second best."""
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    return ranked[0][0], ranked[0][1], ranked[0][1] - (ranked[1][1] if len(ranked) > 1 else float("nan"))


def warm_up() -> None:
    """One untimed fit, so neither side pays TensorFlow's start-up inside its timing."""
    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()  # quiet import, op determinism (CPU), as a sweeper worker has it
    import keras
    import numpy as np

    from sweeper.train.models.mlp import build_mlp

    keras.utils.set_random_seed(0)
    model = build_mlp({"X_shape_": (None, 28, 28, 1), "n_classes_": 10})
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(np.zeros((64, 28, 28, 1)), np.zeros(64), epochs=1, verbose=0)
    keras.backend.clear_session()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grid", choices=sorted(GRIDS), default="small")
    ap.add_argument("--workers", type=int, default=1, help="sweeper worker processes (default 1, like the notebook)")
    ap.add_argument("--fuse", default="off", help="sweeper's compute.fuse: off (default), auto or a pack size K")
    ap.add_argument("--seeding", choices=["scikeras", "trial"], default="scikeras",
                    help="sweeper's seeding: scikeras (default: each fit seeded as the notebook's) or trial (its own seeds)")
    ap.add_argument("--skip-notebook", action="store_true", help="time sweeper's side only (no ratio)")
    args = ap.parse_args()
    grid = GRIDS[args.grid]
    n = 1
    for values in grid.values():
        n *= len(values)
    print(f"grid {args.grid!r}: {n} points x 3 folds on mnist5k (notebook-A MLP), sweeper workers: {args.workers}, fuse: {args.fuse}, seeding: {args.seeding}")
    warm_up()
    # sweeper first: a failure there shows before the notebook's half hour on the full grid.
    sw_wall, sw = sweeper_way(grid, args.workers, args.fuse, args.seeding)
    sw_best, sw_score, sw_lead = _top(sw)
    print(f"  sweeper                            : {sw_wall:8.1f} s   best mean CV accuracy {sw_score:.4f}  {sw_best}",
          flush=True)
    if args.skip_notebook:
        return
    nb_wall, nb = notebook_way(grid)
    nb_best, nb_score, nb_lead = _top(nb)
    print(f"  notebook (GridSearchCV, sequential): {nb_wall:8.1f} s   best mean CV accuracy {nb_score:.4f}  {nb_best}")
    print(f"ratio sweeper / notebook = {sw_wall / nb_wall:.2f}   (goal <= {0.6 if args.fuse == 'off' else 0.30}); "
          f"best-score difference {100 * (sw_score - nb_score):+.2f} points; same best configuration: "
          f"{'yes' if sw_best == nb_best else 'no'}")
    # With seeding: scikeras both sides seed every fit as KerasClassifier(random_state=42) does,
    # under the same TensorFlow settings: the same fits, so the same scores.
    common = sorted(set(sw) & set(nb))
    diffs = [abs(sw[k] - nb[k]) for k in common]
    print(f"  scores equal (within 1e-6) on {sum(d < 1e-6 for d in diffs)} of {len(common)} configurations, "
          f"largest difference {100 * max(diffs, default=float('nan')):.3f} points; lead of the best over the "
          f"second: sweeper {100 * sw_lead:.2f} points, notebook {100 * nb_lead:.2f}; Spearman over all points "
          f"{_spearman(sw, nb):.2f}")


def _spearman(a: Scores, b: Scores) -> float:
    from scipy.stats import spearmanr

    keys = sorted(set(a) & set(b))
    return float(spearmanr([a[k] for k in keys], [b[k] for k in keys]).statistic)

if __name__ == "__main__":
    main()
