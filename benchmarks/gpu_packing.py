"""Trials per hour with K = 1, 2, 4 trials packed on each GPU (goal: >= 2.5x at the best K for
the notebook-A MLP), through `sweeper run --trials-per-gpu K`.

Each K runs the same sweep (the notebook-A MLP on mnist5k, 24 learning-rate/batchnorm/dropout points,
holdout 0.2, 15 epochs, batch 1024) in a fresh store; trials/hour counts completed trials over
the wall time of the whole `sweeper run`, worker start-up included.

    .venv/bin/python benchmarks/gpu_packing.py                 # needs an NVIDIA GPU
    .venv/bin/python benchmarks/gpu_packing.py --cpu           # the same with K CPU workers instead
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

SWEEP = {
    "name": "gpu-packing", "data": {"dataset": "mnist5k"}, "model": "mlp", "method": "grid",
    "params": {
        "optimizer__learning_rate": [0.001, 0.002, 0.005, 0.01],
        "model__batchnorm": [True, False],
        "model__dropout": [0.2, 0.3, 0.4],
    },
    "training": {"optimizer": "adam", "epochs": 15, "batch_size": 1024},
    "validation": {"holdout": 0.2}, "seed": 0,
}


def run(k: int, cpu: bool, tmp: Path) -> tuple[float, int]:
    import optuna

    store = f"sqlite:///{tmp / f'k{k}.db'}"
    path = tmp / f"k{k}.yaml"
    path.write_text(yaml.safe_dump({**SWEEP, "storage": store}))
    cmd = [sys.executable, "-m", "sweeper", "run", str(path), "--quiet", "--no-report"]
    cmd += ["--gpus", "none", "--workers", str(k)] if cpu else ["--trials-per-gpu", str(k)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    wall = time.perf_counter() - t0
    done = [t for t in optuna.load_study(study_name="gpu-packing", storage=store).get_trials()
            if t.state.name == "COMPLETE"]
    return wall, len(done)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu", action="store_true", help="pack K CPU worker processes instead of K trials per GPU")
    ap.add_argument("--k", default="1,2,4", help="values of K (default 1,2,4)")
    args = ap.parse_args()
    from sweeper.train.devices import detect_gpus

    gpus = detect_gpus()
    if not gpus and not args.cpu:
        print("no NVIDIA GPU found (nvidia-smi): nothing to measure; use --cpu for the CPU variant")
        return
    where = "CPU workers" if args.cpu else f"{len(gpus)} GPU(s): " + ", ".join(f"#{g.index} {g.memory_mb} MiB" for g in gpus)
    print(f"notebook-A MLP on mnist5k, {len(SWEEP['params']['optimizer__learning_rate']) * 6} trials per run, {where}")
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for k in [int(v) for v in args.k.split(",")]:
            wall, n = run(k, args.cpu, Path(d))
            rows.append((k, wall, n, n / wall * 3600))
            print(f"  K={k}: {n} trials in {wall:.1f} s = {n / wall * 3600:.0f} trials/hour")
    base = rows[0][3]
    print("\nK  trials/hour  speed-up vs K=1")
    for k, _, _, rate in rows:
        print(f"{k:<2} {rate:11.0f}  {rate / base:.2f}x")


if __name__ == "__main__":
    main()
