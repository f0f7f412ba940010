"""Replay of ``time_to_best.py``'s sweep on the grid's recorded curves: sweeper's own loop (its
batch asking, ``claim_batch``), sampler, pruner and stop rule, with each pack's training replaced
by the per-epoch scores a ``fuse: auto`` run of the 96-point grid recorded (no training).

With ``seeding: scikeras`` a configuration's curve is the same whoever trains it and in whichever
pack (fused == unfused), and a k-fold trial's per-epoch value is the mean over its folds in both
(train/fused/trials.py ``report``), so the replay asks and prunes what a real run does; ``--check
DB`` compares it with a real run's store. Each pack is replayed as fit_fused trains it: its
members (one per fold of each configuration but epochs: shorter twins ride on a longer one) step
together, a trial's mean is reported once all its folds reached the epoch, a pruned or finished
trial frees its members. The time estimate is ``start + per_pack x packs + per_pack_epoch x
pack-epochs + per_slot_epoch x slot-epochs``, where slot-epochs count a pack's slots as
fit_fused re-packed them before 2026-12-06 (smaller once half are free; fit_fused now traces a
sweep's capacity and re-packs at a quarter, its padding and frozen slots costing little): a
proxy for the work, with constants fitted to real sweeps of the current code (README).

    .venv/bin/python benchmarks/ttb_replay.py --record /tmp/grid.db         # the grid's curves -> JSON
    .venv/bin/python benchmarks/ttb_replay.py --seeds 40 [--set KEY=VALUE ...]
    .venv/bin/python benchmarks/ttb_replay.py --check /tmp/sweep-0.db --salt 0
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, quiet_optuna  # noqa: E402

SWEEP = ROOT / "sweeps" / "notebook_mlp_tpe.yaml"
GRID_KEYS = ("batch_size", "epochs", "optimizer", "optimizer__learning_rate", "model__batchnorm", "model__dropout")
CURVES = Path(os.environ.get("TTB_CURVES") or Path(tempfile.gettempdir()) / "sweeper-ttb-curves.json")  # --record writes it
WITHIN = 0.003 + 1e-9  # 0.3 points (scores are multiples of 1/5000 over 3 folds)
# Time model (seconds), 2-core CPU, fitted to five real runs of the kept sweep file after packs
# shared one traced step (2026-12-06, README "time to best"): a sweep's fixed cost (Python,
# TensorFlow, data, store, the one trace, Optuna) and its slot-epochs.
START_S = 11.0  # until the first pack trains, its trace, the run's Optuna and store costs
PACK_S = 0.5  # per pack: members' initial weights, the asks, the first epoch's warm-up
EPOCH_S = 0.07  # per pack and epoch, whatever its size (its Python loop, validation call, reports)
SLOT_EPOCH_S = 0.025  # per slot and epoch (1024 or 2048 rows per step: the same rows per epoch)


def config_key(params: dict[str, Any]) -> str:
    return json.dumps({k: params[k] for k in GRID_KEYS}, sort_keys=True, default=str)


def record(url: str, out: Path) -> dict[str, list[float]]:
    """Each completed grid trial's per-epoch values (the mean over its folds), by configuration."""
    import optuna

    name = optuna.get_all_study_names(url)[0]
    study = optuna.load_study(study_name=name, storage=url)
    table = {config_key(t.params): [t.intermediate_values[e] for e in sorted(t.intermediate_values)]
             for t in study.get_trials() if t.state.name == "COMPLETE"}
    out.write_text(json.dumps(table))
    return table


@dataclass
class PackLog:
    key: Any
    trials: int
    members: int
    slot_epochs: int
    repacks: int
    epochs: int

    def seconds(self) -> float:
        return PACK_S + EPOCH_S * self.epochs + SLOT_EPOCH_S * self.slot_epochs


@dataclass
class Replayer:
    """A KerasEvaluator whose packs replay recorded curves (built in ``evaluator``)."""

    table: dict[str, list[float]]
    folds: int
    packs: list[PackLog] = field(default_factory=list)


def evaluator(spec: Any, rep: Replayer) -> Any:
    import optuna

    from sweeper.worker.evaluators import KerasEvaluator

    class ReplayEvaluator(KerasEvaluator):
        def evaluate(self, entries: list[Any], key: Any | None) -> None:
            curves = [self_curve(e.params) for e in entries]
            # Members: one per fold of each configuration but epochs (fit_fused's riders).
            trainings: dict[str, int] = {}
            for e, c in zip(entries, curves):
                same = json.dumps({k: v for k, v in e.params.items() if k != "epochs"}, sort_keys=True, default=str)
                trainings[same] = max(trainings.get(same, 0), len(c))
            riders_of: dict[str, list[int]] = {}
            for i, e in enumerate(entries):
                same = json.dumps({k: v for k, v in e.params.items() if k != "epochs"}, sort_keys=True, default=str)
                riders_of.setdefault(same, []).append(i)
            # The order trials report in each epoch: fit_fused calls should_stop member by member
            # (members in the order their first trial came), and a member's riders in turn.
            order = [i for same in riders_of for i in riders_of[same]]
            ended = [False] * len(entries)
            slots = len(trainings) * self.folds_
            live_members = dict(trainings)  # training -> its epochs; gone when all its riders ended
            slot_epochs = repacks = epochs = 0
            for epoch in range(max(trainings.values())):
                live = [s for s in live_members if not all(ended[i] for i in riders_of[s])
                        and epoch < live_members[s]]
                if not live:
                    break
                if len(live) * self.folds_ <= slots // 2:
                    slots, repacks = len(live) * self.folds_, repacks + 1
                slot_epochs, epochs = slot_epochs + slots, epochs + 1
                for i in order:
                    e, c = entries[i], curves[i]
                    if ended[i] or epoch >= len(c):
                        continue
                    try:
                        if e.on_epoch is not None:
                            e.on_epoch(epoch, c[epoch])
                    except optuna.TrialPruned as exc:
                        e.outcome, ended[i] = exc, True
                        continue
                    if epoch + 1 == len(c):
                        e.outcome, ended[i] = float(c[-1]), True
            rep.packs.append(PackLog(key, len(entries), len(trainings) * self.folds_, slot_epochs, repacks, epochs))

        folds_ = rep.folds

    def self_curve(params: dict[str, Any]) -> list[float]:
        return rep.table[config_key(params)]

    return ReplayEvaluator(spec)


def replay(sets: list[str], salt: int, tmp: Path, table: dict[str, list[float]]) -> dict[str, Any]:
    """One sweep of SWEEP (with ``sets``), worker salt ``salt``, on a fresh SQLite store."""
    from sweeper.config.spec import load_spec
    from sweeper.search.strategy import strategy_for
    from sweeper.store.trials import worker_salt
    from sweeper.worker import journeys, loop
    from sweeper.worker.journeys import set_worker_index

    spec = load_spec(SWEEP, sets)
    url = f"sqlite:///{tmp / f'replay-{salt}.db'}"
    study = journeys.open_run(spec, url)
    set_worker_index(salt)
    study.sampler = strategy_for(spec).sampler(worker_salt(study, salt))
    rep = Replayer(table, spec.kfold or 1)
    prog = loop.work(study, spec, evaluator(spec, rep), loop.LoopOptions(storage_url=url))
    done = [t for t in study.get_trials() if t.state.name == "COMPLETE"]
    best = max((t.value for t in done), default=float("nan"))
    packs, slot_epochs = len(rep.packs), sum(p.slot_epochs for p in rep.packs)
    return {"best": best, "trials": len(study.get_trials()), "text": prog.text(), "packs": packs,
            "slot_epochs": slot_epochs, "seconds": START_S + sum(p.seconds() for p in rep.packs),
            "sequence": [(t.number, config_key(t.params), t.state.name) for t in sorted(study.get_trials(), key=lambda t: t.number)],
            "pack_sizes": [p.trials for p in rep.packs]}


def check(db: str, salt: int, sets: list[str], table: dict[str, list[float]]) -> bool:
    """Whether the replay asks, in order, the trials a real run stored, with the same states."""
    import optuna

    url = f"sqlite:///{db}"
    study = optuna.load_study(study_name=optuna.get_all_study_names(url)[0], storage=url)
    real = [(t.number, config_key(t.params), t.state.name) for t in sorted(study.get_trials(), key=lambda t: t.number)]
    with tempfile.TemporaryDirectory() as d:
        got = replay(sets, salt, Path(d), table)["sequence"]
    for a, b in zip(real, got):
        print(("   " if a == b else "!! ") + f"real {a}  replay {b}")
    print(f"real {len(real)} trials, replay {len(got)}: {'same' if real == got else 'DIFFERENT'}")
    return real == got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", metavar="GRID_DB", help="write the grid store's curves to $TTB_CURVES")
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--first", type=int, default=0)
    ap.add_argument("--check", metavar="DB", help="compare with a real run's SQLite store")
    ap.add_argument("--salt", type=int, default=0)
    ap.add_argument("--set", action="append", default=[])
    ap.add_argument("--budget", type=float, default=40.0, help="seconds the time goal allows (0.05 x the grid)")
    ap.add_argument("-v", action="store_true")
    args = ap.parse_args()
    quiet_optuna()
    if args.record:
        table = record(f"sqlite:///{args.record}", CURVES)
        print(f"{len(table)} curves -> {CURVES}")
        return
    table = json.loads(CURVES.read_text())
    if args.check:
        sys.exit(0 if check(args.check, args.salt, args.set, table) else 1)
    top = max(c[-1] for c in table.values())
    rows = []
    with tempfile.TemporaryDirectory(dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        for salt in range(args.first, args.first + args.seeds):
            r = replay(args.set, salt, Path(d), table)
            ok = top - r["best"] <= WITHIN
            rows.append((ok, r["seconds"], r))
            if args.v:
                print(f"  salt {salt}: best {r['best']:.4f} {'in' if ok else 'out'}  ~{r['seconds']:.0f} s  "
                      f"{r['packs']} packs {r['pack_sizes']}, {r['slot_epochs']} slot-epochs; {r['text']}")
    hit = sum(ok for ok, _, _ in rows)
    both = sum(ok and s <= args.budget for ok, s, _ in rows)
    secs = [s for _, s, _ in rows]
    print(f"{' '.join(args.set) or '(sweep file)'}: within 0.3 points {hit}/{len(rows)}, and <= {args.budget:.0f} s "
          f"{both}/{len(rows)}; est. s median {statistics.median(secs):.1f} (max {max(secs):.1f}); trials median "
          f"{statistics.median(r['trials'] for _, _, r in rows)}")


if __name__ == "__main__":
    main()
