"""TPE + Hyperband against the full grid on the same space: epochs consumed until the search is
within 0.3 points of the grid's best validation accuracy (goal: <= 25 % of the grid's epochs).

Both searches run through sweeper on mnist5k (holdout 0.2, the §A MLP), same space, same
epochs per full trial. Epochs consumed = the epochs actually trained, pruned trials included
(counted from each trial's per-epoch reports). Prints both best-so-far curves as a table.

    .venv/bin/python benchmarks/search_efficiency.py              # 48-point grid, 40 TPE trials
    .venv/bin/python benchmarks/search_efficiency.py --tpe-trials 60 --seeds 3
"""

from __future__ import annotations

import argparse
import os
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


def run(method: str, tmp: Path, seed: int, trials: int | None) -> list[tuple[int, float]]:
    """Run one search; return (cumulative epochs, best complete score so far) after each trial."""
    from sweeper import loop
    from sweeper import study as st
    from sweeper.spec import spec_from_dict

    raw: dict[str, Any] = {
        "name": f"{method}-{seed}", "data": {"dataset": "mnist5k"}, "model": "mlp", "method": method,
        "params": SPACE, "training": {"epochs": EPOCHS, "batch_size": 256}, "validation": {"holdout": 0.2},
        "seed": seed, "storage": f"sqlite:///{tmp / f'{method}-{seed}.db'}",
    }
    if method == "tpe":
        raw["trials"] = trials
        raw["pruner"] = {"type": "hyperband", "min_resource": 1, "max_resource": EPOCHS, "reduction_factor": 3}
    spec = spec_from_dict(raw)
    study = st.create_or_load(spec, st.make_storage(spec.storage))
    loop.work(study, spec, loop.keras_evaluate)
    curve, epochs, best = [], 0, float("-inf")
    for t in sorted(study.get_trials(), key=lambda t: t.number):
        epochs += len(t.intermediate_values)
        if t.state.name == "COMPLETE" and t.value is not None:
            best = max(best, t.value)
        curve.append((epochs, best))
    return curve


def epochs_to_reach(curve: list[tuple[int, float]], target: float) -> int | None:
    return next((e for e, b in curve if b >= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tpe-trials", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=1, help="TPE runs with different seeds (the grid runs once)")
    args = ap.parse_args()
    from sweeper.runner import configure_tensorflow

    configure_tensorflow()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t0 = time.perf_counter()
        grid = run("grid", tmp, 0, None)
        grid_s = time.perf_counter() - t0
        grid_epochs, grid_best = grid[-1]
        target = grid_best - WITHIN
        print(f"grid: {len(grid)} trials, {grid_epochs} epochs, best {grid_best:.4f} ({grid_s:.0f} s); "
              f"target = best - 0.3 points = {target:.4f}")
        rows = []
        for seed in range(args.seeds):
            t0 = time.perf_counter()
            tpe = run("tpe", tmp, seed, args.tpe_trials)
            reached = epochs_to_reach(tpe, target)
            frac = f"{100 * reached / grid_epochs:.0f} %" if reached else "not reached"
            rows.append((seed, tpe, reached))
            print(f"tpe+hyperband seed {seed}: {len(tpe)} trials, {tpe[-1][0]} epochs in all, best {tpe[-1][1]:.4f} "
                  f"({time.perf_counter() - t0:.0f} s); reached the target after {reached} epochs = {frac} of the grid's")
        grid_reached = epochs_to_reach(grid, target)
        print(f"(the grid itself, in its file order, reached the target after {grid_reached} epochs)")
        print("\nbest-so-far by epochs consumed:")
        marks = sorted({e for e in range(0, grid_epochs + 1, max(1, grid_epochs // 16))} | {grid_epochs})
        header = "epochs  " + "grid     " + "".join(f"tpe{s:<6}" for s, _, _ in rows)
        print(header)
        for m in marks:
            def at(curve: list[tuple[int, float]]) -> str:
                vals = [b for e, b in curve if e <= m]
                return f"{vals[-1]:.4f}   " if vals and vals[-1] > float('-inf') else "-        "
            print(f"{m:6d}  " + at(grid) + "".join(at(c) for _, c, _ in rows))


if __name__ == "__main__":
    main()
