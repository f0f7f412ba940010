"""Shared set-up for the benchmarks: quiet logs, sweep specs, temporary stores, RSS, tables.

Nothing here imports TensorFlow, so ``noop_trial`` can serve as a cheap ``trial_function``
(``benchmarks._common:noop_trial``) in worker processes started from the repository root.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")

import socket
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sweeper.config.spec import SweepSpec, spec_from_dict  # noqa: E402

NOOP_TRIAL = "benchmarks._common:noop_trial"


def quiet_optuna() -> None:
    """Optuna at WARNING, no ExperimentalWarning (what ``sweeper`` itself does)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def make_spec(**fields: Any) -> SweepSpec:
    """A validated sweep definition: an mlp on ``digits`` unless ``fields`` say otherwise."""
    raw: dict[str, Any] = {"name": "bench", "data": {"dataset": "digits"}, "model": "mlp", "seed": 0}
    raw.update(fields)
    return spec_from_dict(raw, source="benchmark")


def sqlite_url(folder: str | os.PathLike[str], name: str) -> str:
    return f"sqlite:///{Path(folder) / name}.db"


def noop_trial(spec: SweepSpec, params: dict[str, Any], seed: int, on_epoch: Any) -> float:
    """A trial that trains nothing: orchestration cost only."""
    return float(seed % 1000) / 1000.0


WHAT_IF = {
    "single-gc": "sweeper.train.trial: skip its explicit gc.collect() after each trial "
                 "(keras clear_session(), called when reuse_models is off, already collects)",
    "purge-gradients": "after each trial drop the CustomGradient-* entries TF registered during it "
                       "(they pin every traced train graph: tensorflow#97697)",
    "numpy-fit": "feed NumPy arrays to Keras as plain scikeras does, instead of sweeper's tf.data pipelines",
}


def apply_what_if(names: Sequence[str]) -> None:
    """Patch this process to try a proposed change to sweeper without editing it (see WHAT_IF)."""
    for name in names:
        if name not in WHAT_IF:
            raise SystemExit(f"unknown --what-if {name!r} (known: {', '.join(WHAT_IF)})")
    if "single-gc" in names:
        import types

        import sweeper.train.trial

        sweeper.train.trial.gc = types.SimpleNamespace(collect=lambda *a: 0)  # type: ignore[assignment]
    if "numpy-fit" in names:
        from scikeras.wrappers import KerasClassifier

        from sweeper.train.classifier import SweeperClassifier

        SweeperClassifier._fit_keras_model = KerasClassifier._fit_keras_model  # type: ignore[method-assign]
    if "purge-gradients" in names:
        import keras
        from tensorflow.python.framework import ops

        registry = ops.gradient_registry._registry
        clear_session = keras.backend.clear_session
        known = set(registry)

        def purging_clear_session(*args: Any, **kwargs: Any) -> Any:
            nonlocal known
            for key in [k for k in registry if k not in known and k.startswith("CustomGradient-")]:
                del registry[key]
            known = set(registry)
            return clear_session(*args, **kwargs)

        keras.backend.clear_session = purging_clear_session


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def trial_span_s(trials: Sequence[Any]) -> float:
    """Seconds from the first trial's start to the last trial's completion (stored timestamps)."""
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None]
    return (max(ends) - min(starts)).total_seconds() if starts and ends else float("nan")


def trial_durations_s(trials: Sequence[Any]) -> list[float]:
    """Per-trial seconds (datetime_start -> datetime_complete), in trial-number order."""
    done = sorted((t for t in trials if t.datetime_start and t.datetime_complete), key=lambda t: t.number)
    return [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]


def load_note(start_load: float) -> str:
    """Other work on the machine skews timings: say how busy it was."""
    return (f"machine: {os.cpu_count()} CPUs, 1-min load average {start_load:.2f} at start, "
            f"{os.getloadavg()[0]:.2f} at end")


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain fixed-width table: floats with 3 decimals (or as pre-formatted strings)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    print(f"\n{title}")
    print(line)
    print("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(headers, widths))))
    print(line)
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print(line)


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "n/a" if v != v else f"{v:.3f}"
    return str(v)
