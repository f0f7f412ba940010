"""A study -> TensorBoard's HParams dashboard (the runs as tracking/tb_runs.py writes them): the
config at the folder's top and one run ``trial-NNNN`` per trial. Re-exporting replaces the
folder's runs (those a live sink wrote too)."""

from __future__ import annotations

from pathlib import Path

import optuna

from sweeper.config.spec import SweepSpec
from sweeper.errors import SweeperError
from sweeper.tracking.records import records
from sweeper.tracking.tb_runs import (
    clear,
    curve_tag,
    run_name,
    write_config,
    write_trial,
)

__all__ = ["curve_tag", "export", "run_name"]


def export(study: optuna.Study, spec: SweepSpec, out: str | Path) -> int:
    """Write the study's HParams runs into ``out`` (replacing an earlier export's); returns how
    many trial runs were written."""
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        clear(folder)
    except OSError as exc:
        raise SweeperError(f"--out {out}: cannot write ({exc.strerror})") from None
    recs = records(study, spec)
    kinds = write_config(folder, spec, recs)
    for r in recs:
        write_trial(folder, spec, r, kinds)
    return len(recs)
