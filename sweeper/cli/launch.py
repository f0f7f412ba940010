"""``launch slurm`` and ``launch k8s``: create the study (its definition stored, its grid queued,
as ``run`` does before working), then start its workers on a cluster: a SLURM array job (one
array task per worker) or a Kubernetes Indexed Job (one completion index per worker). Every option
is checked before the study is created; ``--dry-run`` writes and prints the file, submitting nothing."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from sweeper.cli import launch_files as lf
from sweeper.config.spec import SweepSpec, load_spec
from sweeper.errors import SweeperError
from sweeper.store.storage import parse_url
from sweeper.worker import journeys


def register(sub: Any) -> None:
    p = sub.add_parser("launch", help="create a study and start its workers on SLURM or Kubernetes")
    engines = p.add_subparsers(dest="engine", required=True, metavar="ENGINE")

    s = engines.add_parser("slurm", help="an sbatch array job: one array task per worker")
    _common(s)
    s.add_argument("--cpus-per-worker", type=int, default=None, metavar="C", help="#SBATCH --cpus-per-task")
    s.add_argument("--time", required=True, metavar="HH:MM:SS", help="each worker's time limit (#SBATCH --time)")
    s.add_argument("--partition", default=None)
    s.add_argument("--account", default=None)
    s.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="a shell line run before the worker, e.g. 'module load cuda' (repeatable)")
    s.add_argument("--storage-env", default=None, metavar="VAR",
                   help="the script reads the store URL from $VAR and never contains it")
    s.add_argument("--python", default=sys.executable,
                   help="the Python the nodes run sweeper with (default: this one)")
    s.set_defaults(func=cmd_slurm)

    k = engines.add_parser("k8s", help="a Kubernetes Indexed Job: one completion index per worker")
    _common(k)
    k.add_argument("--image", required=True, help="container image with sweeper installed")
    k.add_argument("--storage-secret", required=True, metavar="NAME",
                   help=f"Secret whose key {lf.SECRET_KEY!r} holds the store URL")
    k.set_defaults(func=cmd_k8s)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="sweep definition (YAML)")
    p.add_argument("--workers", type=int, required=True, metavar="N", help="how many workers")
    p.add_argument("--gpus-per-worker", type=int, default=0, metavar="G")
    p.add_argument("--storage", default=None,
                   help="the study store, a server every node reaches: postgresql://USER@HOST/DB "
                        "(default: the sweep file's; launch slurm --storage-env VAR: $VAR)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a sweep-file setting")
    p.add_argument("--out", default=None, metavar="PATH", help="where the script or manifest goes "
                   "(default: sweeper-STUDY.sbatch / sweeper-STUDY.yaml here)")
    p.add_argument("--dry-run", action="store_true", help="write and print the file; submit nothing")


def _store_url(args: argparse.Namespace, spec: SweepSpec, env_var: str | None = None) -> str:
    url = args.storage or (os.environ.get(env_var) if env_var else None) or spec.storage
    if not parse_url(url).has_server:
        raise SweeperError(f"--storage: {url} is not a database server; cluster nodes share a study through "
                           "one every node reaches, e.g. postgresql://USER:PASSWORD@HOST:5432/DB")
    return url


def _tool(name: str, dry_run: bool) -> None:
    if not dry_run and shutil.which(name) is None:
        raise SweeperError(f"{name} not found on PATH; --dry-run writes the file without submitting it")


def cmd_slurm(args: argparse.Namespace) -> int:
    lf.positive("--workers", args.workers)
    lf.positive("--gpus-per-worker", args.gpus_per_worker, 0)
    lf.positive("--cpus-per-worker", args.cpus_per_worker)
    lf.check_time(args.time)
    lf.check_slurm_name("partition", args.partition)
    lf.check_slurm_name("account", args.account)
    lf.check_env_name(args.storage_env)
    spec = load_spec(args.file, args.set)
    url = _store_url(args, spec, args.storage_env)
    _tool("sbatch", args.dry_run)
    _slurm_has_gpus(args.gpus_per_worker, args.partition, args.dry_run)
    job = lf.SlurmJob(spec.name, args.workers, args.time, args.python, "" if args.storage_env else url,
                      args.storage_env, args.gpus_per_worker, args.cpus_per_worker, args.partition,
                      args.account, tuple(args.setup))
    text = lf.sbatch_script(job)
    journeys.open_run(spec, url)
    path = _write(args.out or f"{lf.job_name(spec.name)}.sbatch", text)
    return _submit(["sbatch", str(path)], path, text, args.dry_run)


def _slurm_has_gpus(gpus: int, partition: str | None, dry_run: bool) -> None:
    """An array task asking for more GPUs than any node has would wait in the queue forever (or
    be refused after the study is made): ask sinfo first. --dry-run, or no sinfo answer: sbatch decides."""
    if dry_run or gpus == 0 or shutil.which("sinfo") is None:
        return
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%G", *(["-p", partition] if partition else [])],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return
    if done.returncode != 0 or not done.stdout.strip():
        return
    most = max(lf.gres_gpus(g) for g in done.stdout.split())
    if most < gpus:
        where = f" in partition {partition}" if partition else ""
        raise SweeperError(f"--gpus-per-worker: {gpus}, but no node of this SLURM cluster{where} has more than "
                           f"{most} GPU(s) (sinfo's gres: {', '.join(sorted(set(done.stdout.split())))}); "
                           "nothing was created")


def cmd_k8s(args: argparse.Namespace) -> int:
    lf.positive("--workers", args.workers)
    lf.positive("--gpus-per-worker", args.gpus_per_worker, 0)
    lf.check_image(args.image)
    lf.check_secret(args.storage_secret)
    spec = load_spec(args.file, args.set)
    url = _store_url(args, spec)
    _tool("kubectl", args.dry_run)
    text = lf.manifest_text(lf.K8sJob(spec.name, args.workers, args.image, args.storage_secret,
                                      args.gpus_per_worker))
    journeys.open_run(spec, url)
    path = _write(args.out or f"{lf.job_name(spec.name)}.yaml", text)
    return _submit(["kubectl", "apply", "-f", str(path)], path, text, args.dry_run)


def _write(out: str, text: str) -> Path:
    path = Path(out)
    try:
        path.write_text(text)
    except OSError as exc:
        raise SweeperError(f"--out: cannot write {out}: {exc.strerror or exc}") from None
    return path


def _submit(cmd: list[str], path: Path, text: str, dry_run: bool) -> int:
    if dry_run:
        print(text, end="")
        print(f"wrote {path} (--dry-run: not submitted; submit with: {' '.join(cmd)})", file=sys.stderr)
        return 0
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        why = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()[0]
        raise SweeperError(f"{cmd[0]} failed: {why} (the study is created; submit again with: {' '.join(cmd)})")
    print(done.stdout.strip() or f"submitted {path}")
    return 0
