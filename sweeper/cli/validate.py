"""``validate``: check a sweep file and print the size of its space."""

from __future__ import annotations

import argparse
from typing import Any

from sweeper.config.params import NUMBERED_WIDTH
from sweeper.config.spec import SweepSpec, load_spec


def register(sub: Any) -> None:
    p = sub.add_parser("validate", help="check a sweep file and print the size of its space")
    p.add_argument("file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as for 'sweeper run'")
    p.set_defaults(func=cmd_validate)


def cmd_validate(args: argparse.Namespace) -> int:
    spec = load_spec(args.file, args.set)
    from sweeper.train.data import LOCAL_DATASETS, check_data

    if spec.data.dataset in LOCAL_DATASETS and not spec.trial_function:
        check_data(spec)  # downloads are checked by 'run' (they may take minutes)
    size = spec.grid_size
    space = f"{size} grid points" if size is not None else "continuous space"
    budget = f"{spec.budget} trials" if spec.budget else f"until {spec.timeout:g} s"
    val = f"{spec.kfold}-fold CV" if spec.kfold else f"holdout {spec.holdout:g}"
    objectives = ", ".join(f"{name} ({d})" for name, d in zip(spec.objective_names, spec.directions))
    extra = f"; constraints {', '.join(c.label() for c in spec.constraints)}" if spec.constraints else ""
    if spec.compute.fuse != "off":
        from sweeper.train.fused.trials import fuse_reason

        reason = fuse_reason(spec)
        extra += f"; fuse {spec.compute.fuse}" + (f" (trains unfused: {reason})" if reason else "")
        if not reason and any(k == "model__layers" or NUMBERED_WIDTH.fullmatch(k) for k in [*spec.params, *spec.fixed]):
            extra += " (trials that set layers or a per-layer width train alone)"
    if spec.pruner.kind != "none":
        extra += f"; pruner {spec.pruner.kind}" + _pruner_note(spec)
    if spec.stop is not None:
        delta = spec.stop.min_delta
        if spec.multi_objective:
            what = "leave the Pareto front unchanged" + (f" (within {delta:g})" if delta else "")
        else:
            what = f"improve the best by <= {delta:g}" if delta else "do not improve the best"
        extra += f"; stop once {spec.stop.patience} finished trials in a row {what}"
    if spec.seeds_as_scikeras:
        extra += f"; seeding {spec.seeding} (seed {spec.seed} for every configuration and fold)"
    print(f"ok: {spec.name}: {len(spec.params)} parameters, {space}; method {spec.method}, {budget}; "
          f"data {spec.data.dataset}, model {spec.model}, {val}, "
          f"objective{'s' if len(spec.objective_names) > 1 else ''} {objectives}{extra}")
    return 0


def _pruner_note(spec: SweepSpec) -> str:
    """How a trial of several fits is judged (worker/outcome.py ``reports``)."""
    fits = (spec.kfold or 1) * spec.repeats
    if fits == 1 or spec.trial_function:
        return ""
    from sweeper.worker.evaluators import fuses

    if fuses(spec) and spec.compute.fuse != 1:
        return (f" ({fits} fits per trial: judged on each epoch's mean over the fits, from the first epoch in a "
                "fused pack, during the last fit for a trial that trains alone)")
    return (f" ({fits} fits per trial, trained one after another: judged during the last, on each epoch's "
            "mean over the fits)")
