"""TPE + successive halving against the full grid on the same space: epochs consumed until the
search is within 0.3 points of the grid's best validation accuracy (goal: <= 25 % of the grid's
epochs).

Both searches run through sweeper on mnist5k (holdout 0.2, the notebook-A MLP), same space, same
epochs per full trial, and the same sweep seed: the same validation split and, for a given
config, the same initial weights, batches and scores (trial seeds depend on the sweep seed and
the params; training is deterministic on CPU). So a search is judged on finding good configs,
not on drawing luckier noise. The search: ``method: tpe`` with ``sampler: {n_startup_trials: 5}``
and ``pruner: {type: successive_halving, min_resource: 1, reduction_factor: 3}``.

Epochs consumed = the epochs actually trained, pruned trials included (counted from each trial's
per-epoch reports; a repeat of a completed config reuses its result and trains nothing).

One TPE run is one draw: where it lands depends on its sampler seed. ``--seeds N`` trains N
searches for real (sampler seeds 0..N-1). ``--replay M`` then replays M sampler seeds against
the per-epoch scores the grid recorded, with sweeper's own sampler, pruner and repeat handling,
and no training: since a config's curve is the same whoever trains it, the replay is exact (the
script checks it reproduces the N real runs) and gives the distribution over seeds.

    .venv/bin/python benchmarks/search_efficiency.py                 # 3 real TPE runs + 40 replays
    .venv/bin/python benchmarks/search_efficiency.py --seeds 1 --replay 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SPACE: dict[str, list[Any]] = {
    "optimizer": ["adam", "rmsprop"],
    "optimizer__learning_rate": [0.0003, 0.001, 0.003, 0.01],
    "model__batchnorm": [True, False],
    "model__dropout": [0.0, 0.2, 0.4],
}
EPOCHS = 12
WITHIN = 0.003  # 0.3 accuracy points
SWEEP_SEED = 0
SEARCH: dict[str, Any] = {
    "method": "tpe",
    "sampler": {"n_startup_trials": 5},
    "pruner": {"type": "successive_halving", "min_resource": 1, "reduction_factor": 3},
}

Curve = list[tuple[int, float]]  # (cumulative epochs, best completed score so far) after each trial


def sweep(method: str, tmp: Path, sampler_seed: int, trials: int | None) -> Any:
    from sweeper.config.spec import spec_from_dict

    raw: dict[str, Any] = {
        "name": f"{method}-{sampler_seed}", "data": {"dataset": "mnist5k"}, "model": "mlp", "method": method,
        "params": SPACE, "training": {"epochs": EPOCHS, "batch_size": 256}, "validation": {"holdout": 0.2},
        "seed": SWEEP_SEED, "storage": f"sqlite:///{tmp / f'{method}-{sampler_seed}.db'}",
    }
    if method != "grid":
        raw.update(SEARCH, trials=trials)
    return spec_from_dict(raw)


def run(method: str, tmp: Path, sampler_seed: int, trials: int | None) -> tuple[Curve, dict[str, list[float]]]:
    """Run one search for real; its curve, and each completed config's per-epoch scores."""
    from sweeper.worker import loop
    from sweeper.search.strategy import strategy_for
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import create_or_load
    spec = sweep(method, tmp, sampler_seed, trials)
    study = create_or_load(spec, make_storage(spec.storage))
    study.sampler = strategy_for(spec).sampler(salt=sampler_seed)  # salt 0: the sweep seed itself
    loop.work(study, spec, loop.for_spec(spec))
    trials_ = sorted(study.get_trials(), key=lambda t: t.number)
    curve, epochs, best = [], 0, float("-inf")
    for t in trials_:
        epochs += len(t.intermediate_values)
        if t.state.name == "COMPLETE" and t.value is not None:
            best = max(best, t.value)
        curve.append((epochs, best))
    table = {_key(t.params): [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
             for t in trials_ if t.state.name == "COMPLETE" and len(t.intermediate_values) == EPOCHS}
    return curve, table


def _key(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True)


def replay(table: dict[str, list[float]], tmp: Path, sampler_seed: int, trials: int) -> Curve:
    """The TPE search of ``run``, with each config's recorded curve instead of training it:
    sweeper's sampler and pruner (``make_sampler``/``make_pruner``), the same study name, the
    same handling of repeated configs (their twin's result, no epochs)."""
    import optuna

    from sweeper.search import space
    from sweeper.search.strategy import make_pruner, strategy_for

    spec = sweep("tpe", tmp, sampler_seed, trials)
    study = optuna.create_study(study_name=spec.name, direction="maximize",
                                sampler=strategy_for(spec).sampler(salt=sampler_seed), pruner=make_pruner(spec.pruner))
    curve, epochs, best = [], 0, float("-inf")
    for _ in range(trials):
        trial = study.ask()
        params = space.suggest(trial, strategy_for(spec).distributions())
        twin = next((t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                     if t.params == params), None)
        if twin is not None:
            study.tell(trial, twin.value)
        else:
            scores, pruned = table[_key(params)], False
            for epoch, value in enumerate(scores):
                trial.report(value, epoch)
                epochs += 1
                if trial.should_prune():
                    pruned = True
                    break
            study.tell(trial, None if pruned else scores[-1], state=optuna.trial.TrialState.PRUNED if pruned else None)
            if not pruned:
                best = max(best, scores[-1])
        curve.append((epochs, best))
    return curve


def epochs_to_reach(curve: Curve, target: float) -> int | None:
    return next((e for e, b in curve if b >= target - 1e-9), None)  # scores are multiples of 1/1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tpe-trials", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=3, help="TPE searches trained for real (sampler seeds 0..N-1)")
    ap.add_argument("--replay", type=int, default=40, help="sampler seeds replayed on the grid's scores (0 = none)")
    args = ap.parse_args()
    import optuna

    from sweeper.train.runtime import configure_tensorflow

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    configure_tensorflow()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        grid, table = run("grid", tmp, 0, None)
        grid_s = time.perf_counter() - t0
        grid_epochs, grid_best = grid[-1]
        target = grid_best - WITHIN
        met = sum(scores[-1] >= target - 1e-9 for scores in table.values())
        print(f"grid: {len(grid)} trials, {grid_epochs} epochs, best {grid_best:.4f} ({grid_s:.0f} s); "
              f"target = best - 0.3 points = {target:.4f}, met by {met} of its {len(table)} points")
        print(f"search: {SEARCH}, {args.tpe_trials} trials")
        rows = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            tpe, _ = run("tpe", tmp, seed, args.tpe_trials)
            reached = epochs_to_reach(tpe, target)
            frac = f"after {reached} epochs = {100 * reached / grid_epochs:.0f} % of the grid's" if reached \
                else "not reached"
            rows.append((seed, tpe, reached))
            print(f"tpe seed {seed}: {len(tpe)} trials, {tpe[-1][0]} epochs in all, best {tpe[-1][1]:.4f} "
                  f"({time.perf_counter() - t0:.0f} s); target {frac}")
        print(f"(the grid itself, in its file order, reached the target after {epochs_to_reach(grid, target)} epochs)")

        print("\nbest-so-far by epochs consumed:")
        marks = sorted({e for e in range(0, grid_epochs + 1, max(1, grid_epochs // 16))} | {grid_epochs})
        print("epochs  " + "grid     " + "".join(f"tpe{s:<6}" for s, _, _ in rows))
        for m in marks:
            def at(curve: Curve) -> str:
                vals = [b for e, b in curve if e <= m]
                return f"{vals[-1]:.4f}   " if vals and vals[-1] > float('-inf') else "-        "
            print(f"{m:6d}  " + at(grid) + "".join(at(c) for _, c, _ in rows))

        if args.replay:
            same = all(replay(table, tmp, s, args.tpe_trials) == c for s, c, _ in rows)
            print(f"\nreplay check: the replay reproduces the {len(rows)} real runs exactly: {'yes' if same else 'NO'}")
            fracs = []
            for seed in range(args.replay):
                reached = epochs_to_reach(replay(table, tmp, seed, args.tpe_trials), target)
                fracs.append(reached / grid_epochs if reached is not None else float("inf"))
            within = sum(f <= 0.25 for f in fracs)
            print(f"replay of sampler seeds 0..{args.replay - 1}: target reached by {sum(f < 1 for f in fracs)}, "
                  f"within 25 % of the grid's epochs by {within} of {args.replay}; median fraction "
                  f"{statistics.median(fracs):.2f}, quartiles {statistics.quantiles(fracs, n=4)[0]:.2f} / "
                  f"{statistics.quantiles(fracs, n=4)[2]:.2f} (inf = not reached in {args.tpe_trials} trials)")


if __name__ == "__main__":
    main()
