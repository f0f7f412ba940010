"""Kill soak: N random SIGKILLs of `sweeper run` / `run --workers 2` / `resume` / `worker`
across grid studies, then each study is finished and checked for exactly-once.

Each kill starts one command in its own process group, waits a random time (a third of the kills
within 0.4 s, where study creation and grid queueing happen; the rest up to 3 s, inside trials),
then SIGKILLs the whole group or only the parent (whose worker children are then killed too, as
an operator's `kill -9` of a stuck group would). Every `--per-study` kills a new study on a new
store begins. Finally `sweeper run FILE` and `sweeper resume` bring each study to its end, and the
check is: every grid point has exactly one COMPLETE trial, no trial failed (a kill from outside
is never a trial's own death), nothing RUNNING or WAITING, `resume` exits 0. Trials are a cheap
function (a sleep), not Keras: this tests the bookkeeping. `--fused` sweeps a real fused Keras
grid (packs of 4 MLPs on digits) instead, with kills spread over its TensorFlow start and packs.

    .venv/bin/python benchmarks/kill_soak.py --kills 50
    .venv/bin/python benchmarks/kill_soak.py --kills 20 --storage-kind postgresql
    .venv/bin/python benchmarks/kill_soak.py --kills 12 --per-study 4 --fused
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import yaml

ROOT = Path(__file__).resolve().parent.parent
TRIALS = '''
import time, zlib
def slow(spec, params, seed, on_epoch):
    time.sleep(SLEEP)
    return zlib.crc32(str(sorted(params.items())).encode()) % 1000 / 1e4
'''


def sweeper(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "sweeper", *args], cwd=cwd, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill(proc: subprocess.Popen[bytes], whole_group: bool) -> None:
    try:
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
            time.sleep(0.2)  # the orphaned workers go on a moment, then the group is cleared
            os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def postgres_database() -> tuple[str, object]:
    import uuid

    import psycopg2

    admin = psycopg2.connect("postgresql://postgres@127.0.0.1/postgres", connect_timeout=5)
    admin.autocommit = True
    name = f"sweeper_soak_{uuid.uuid4().hex[:10]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1/{name}", (admin, name)


def drop_database(handle: object) -> None:
    admin, name = handle  # type: ignore[misc]
    with admin.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


def check(url: str, name: str, points: int) -> list[str]:
    from sweeper.store.progress import study_outcomes
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import load

    study, spec = load(name, make_storage(url, readonly=True))
    trials = study.get_trials()
    done = Counter(json.dumps(t.params, sort_keys=True) for t in trials if t.state == optuna.trial.TrialState.COMPLETE)
    problems = [f"point {p}: {n} COMPLETE trials" for p, n in done.items() if n > 1]
    if len(done) != points:
        problems.append(f"{len(done)} of {points} points complete")
    failed = [o for o in study_outcomes(study, spec)[1] if o.kind == "failed"]
    problems += [f"trial {o.number} failed: {o.reason}" for o in failed]
    stuck = [t.number for t in trials if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    if stuck:
        problems.append(f"trials left RUNNING/WAITING: {stuck}")
    return problems


def sweep_file(name: str, url: str, points: int, fused: bool) -> dict[str, object]:
    if fused:
        return {"name": name, "data": {"dataset": "digits", "limit": 300}, "model": "mlp", "storage": url,
                "params": {"model__dropout": [round(0.05 * i, 2) for i in range(points)]},
                "training": {"epochs": 20, "batch_size": 32, "model__units": 16}, "compute": {"fuse": 4}}
    return {"name": name, "data": "digits", "trial_function": "soak_trials:slow", "storage": url,
            "params": {"model__units": list(range(1, points + 1))}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--per-study", type=int, default=5, help="kills before a new study and store")
    parser.add_argument("--points", type=int, default=6)
    parser.add_argument("--sleep", type=float, default=0.3, help="seconds per trial")
    parser.add_argument("--storage-kind", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep the stores (to inspect a violation)")
    parser.add_argument("--fused", action="store_true", help="a fused Keras grid instead of a sleeping function")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    t0 = time.monotonic()
    kinds: Counter[str] = Counter()
    violations: list[str] = []
    studies = correct = extra_runs = 0
    with tempfile.TemporaryDirectory(prefix="sweeper-soak-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        (work / "soak_trials.py").write_text(TRIALS.replace("SLEEP", repr(args.sleep)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(work), str(ROOT)]), "TF_CPP_MIN_LOG_LEVEL": "3"}
        for first in range(0, args.kills, args.per_study):
            studies += 1
            name = f"soak-{studies}"
            handle = None
            if args.storage_kind == "postgresql":
                url, handle = postgres_database()
            else:
                url = f"sqlite:///{work / f'{name}.db'}"
            sweep = work / f"{name}.yaml"
            sweep.write_text(yaml.safe_dump(sweep_file(name, url, args.points, args.fused)))
            for _ in range(min(args.per_study, args.kills - first)):
                target = rng.choice(["run", "run --workers 2", "resume", "worker"])
                argv = {"run": ["run", str(sweep), "--quiet", "--no-report"],
                        "run --workers 2": ["run", str(sweep), "--workers", "2", "--quiet", "--no-report"],
                        "resume": ["resume", name, "--storage", url, "--quiet", "--no-report"],
                        "worker": ["worker", name, "--storage", url, "--quiet"]}[target]
                whole = rng.random() < 0.5
                delay = rng.uniform(0.0, 0.4) if rng.random() < 1 / 3 else rng.uniform(0.4, 12.0 if args.fused else 3.0)
                proc = sweeper(*argv, cwd=work, env=env)
                time.sleep(delay)
                kill(proc, whole)
                kinds[f"{target} ({'group' if whole else 'parent'})"] += 1
            finish = subprocess.run([sys.executable, "-m", "sweeper", "run", str(sweep), "--quiet", "--no-report"],
                                    cwd=work, env=env, capture_output=True, text=True)
            resume = subprocess.run([sys.executable, "-m", "sweeper", "resume", name, "--storage", url, "--quiet",
                                     "--no-report"], cwd=work, env=env, capture_output=True, text=True)
            problems = check(url, name, args.points)
            if finish.returncode != 0:
                extra_runs += 1
                problems.append(f"final run exited {finish.returncode}: {finish.stderr.strip()[-300:]}")
            if resume.returncode != 0:
                problems.append(f"resume exited {resume.returncode}: {resume.stderr.strip()[-300:]}")
            if problems:
                violations += [f"{name}: {p}" for p in problems]
            else:
                correct += 1
            if handle is not None:
                drop_database(handle)
    trial = "fused Keras packs of 4" if args.fused else f"trials {args.sleep} s"
    print(f"kill soak ({args.storage_kind}): {sum(kinds.values())} SIGKILLs over {studies} studies of "
          f"{args.points} grid points, {trial}, {time.monotonic() - t0:.0f} s in all")
    for kind, n in sorted(kinds.items()):
        print(f"  {kind}: {n}")
    print(f"studies correct after one final run + resume: {correct}/{studies} (every point exactly one "
          f"COMPLETE trial, no trial failed)")
    for v in violations:
        print(f"  VIOLATION {v}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
