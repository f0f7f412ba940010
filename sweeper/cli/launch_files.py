"""What ``sweeper launch`` writes: a SLURM array script (one array task per worker) and a
Kubernetes Indexed Job manifest (one completion index per worker), each checked before a study is
created. Plain text a person can read, edit and submit again."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

from sweeper.errors import SweeperError
from sweeper.store.placement import ENGINE_ENV

TIME = re.compile(r"^(?:(\d+)-)?(\d{1,3}):([0-5]\d):([0-5]\d)$")  # HH:MM:SS, or D-HH:MM:SS
SLURM_NAME = re.compile(r"^[A-Za-z0-9_.,-]{1,128}$")  # partitions and accounts: nothing for the shell
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")  # a Kubernetes Secret's name (DNS-1123)
SECRET_KEY = "url"  # the key of the store URL in the Secret --storage-secret names
BACKOFF_PER_INDEX = 3  # a worker's pod that fails is started again this often before its index fails


GRES_GPU = re.compile(r"(?:^|,)gpu(?::[^:,(]+)?:(\d+)")


def positive(option: str, value: int | None, least: int = 1) -> None:
    if value is not None and value < least:
        raise SweeperError(f"{option}: {value} must be >= {least}")


def gres_gpus(gres: str) -> int:
    """GPUs in one node's generic resources as sinfo's %G prints them: '(null)', 'gpu:4',
    'gpu:a100:2(S:0,1),mps:400' (the count is the last field of each gpu entry)."""
    return sum(int(n) for n in GRES_GPU.findall(gres))


def check_time(value: str) -> str:
    m = TIME.match(value)
    if not m:
        raise SweeperError(f"--time: {value!r} is not HH:MM:SS (or D-HH:MM:SS), e.g. 02:00:00")
    days, h, mi, s = (int(g or 0) for g in m.groups())
    if days * 86400 + h * 3600 + mi * 60 + s == 0:
        raise SweeperError(f"--time: {value!r} must be longer than 00:00:00")
    return value


def check_slurm_name(option: str, value: str | None) -> None:
    if value is not None and not SLURM_NAME.match(value):
        raise SweeperError(f"--{option}: {value!r} is not a SLURM name (letters, digits, _ . , -)")


def check_env_name(value: str | None) -> None:
    if value is not None and not ENV_NAME.match(value):
        raise SweeperError(f"--storage-env: {value!r} is not an environment variable name")


def check_secret(value: str) -> None:
    if not DNS_NAME.match(value):
        raise SweeperError(f"--storage-secret: {value!r} is not a Kubernetes Secret name (lower-case letters, "
                           "digits and -, at most 63)")


def check_image(value: str) -> None:
    if not value or any(c.isspace() for c in value):
        raise SweeperError(f"--image: {value!r} is not a container image reference")


def job_name(study: str) -> str:
    """A DNS-1123 name for the study's job: sweeper-<study>, lower-cased, other characters as '-'."""
    slug = re.sub(r"[^a-z0-9]+", "-", study.lower()).strip("-")
    return ("sweeper-" + slug)[:52].rstrip("-")  # Indexed Job pods add -<index>-<hash> to it


@dataclass(frozen=True)
class SlurmJob:
    study: str
    workers: int
    time: str
    python: str
    storage: str  # the URL, or "" with storage_env
    storage_env: str | None = None
    gpus: int = 0
    cpus: int | None = None
    partition: str | None = None
    account: str | None = None
    setup: tuple[str, ...] = ()


def sbatch_script(job: SlurmJob) -> str:
    name = job_name(job.study)
    lines = [
        "#!/bin/bash",
        f"# Written by sweeper launch slurm: {job.workers} worker(s) of study {job.study!r}, one array task each.",
        "# Submit again with: sbatch THIS_FILE (the study and its queued trials are in the store).",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --array=0-{job.workers - 1}",
        "#SBATCH --ntasks=1",
        f"#SBATCH --time={job.time}",
    ]
    if job.cpus is not None:
        lines.append(f"#SBATCH --cpus-per-task={job.cpus}")
    if job.gpus:
        lines.append(f"#SBATCH --gres=gpu:{job.gpus}")
    if job.partition:
        lines.append(f"#SBATCH --partition={job.partition}")
    if job.account:
        lines.append(f"#SBATCH --account={job.account}")
    lines += [f"#SBATCH --output={name}-%A_%a.out", "", "set -eo pipefail  # no -u: module systems read unset variables"]
    lines += list(job.setup)
    lines.append(f"export {ENGINE_ENV}=slurm")
    if job.storage_env:
        var = job.storage_env
        lines.append(f'URL="${{{var}:?set {var} to the study store URL before sbatch (it is passed on to the job)}}"')
    else:
        lines.append(f"URL={shlex.quote(job.storage)}")
    lines += [(f"srun {shlex.quote(job.python)} -m sweeper worker {shlex.quote(job.study)} "
               '--storage "$URL" --index "$SLURM_ARRAY_TASK_ID"'), ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class K8sJob:
    study: str
    workers: int
    image: str
    secret: str
    gpus: int = 0


def indexed_job(job: K8sJob) -> dict[str, Any]:
    """batch/v1 Indexed Job: completion index i runs worker i; the store URL comes from the Secret."""
    name = job_name(job.study)
    labels = {"app.kubernetes.io/name": "sweeper", "app.kubernetes.io/instance": name}
    container: dict[str, Any] = {
        "name": "worker",
        "image": job.image,
        # $(VAR) is expanded by Kubernetes from the container's env; the index comes from
        # $JOB_COMPLETION_INDEX, which the Job controller sets (the worker reads it).
        "command": ["python", "-m", "sweeper", "worker", job.study, "--storage", "$(SWEEPER_STORAGE)"],
        "env": [
            {"name": ENGINE_ENV, "value": "k8s"},
            {"name": "SWEEPER_STORAGE", "valueFrom": {"secretKeyRef": {"name": job.secret, "key": SECRET_KEY}}},
        ],
    }
    if job.gpus:
        container["resources"] = {"limits": {"nvidia.com/gpu": job.gpus}}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": job.workers,
            "parallelism": job.workers,
            "backoffLimitPerIndex": BACKOFF_PER_INDEX,
            "template": {
                "metadata": {"labels": dict(labels)},  # a copy: no YAML anchors in the manifest
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


def manifest_text(job: K8sJob) -> str:
    import yaml

    head = (f"# Written by sweeper launch k8s: {job.workers} worker(s) of study {job.study!r}, one completion\n"
            f"# index each. The store URL is read from Secret {job.secret!r} (key {SECRET_KEY!r}), never written here.\n")
    return head + yaml.safe_dump(indexed_job(job), sort_keys=False)
