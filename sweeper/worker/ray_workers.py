"""Workers as Ray tasks (``sweeper run --engine ray``): N tasks, each with the CPUs and GPUs it
asked for, spread over a Ray cluster's nodes; each runs the one worker loop through the journey
``sweeper worker`` runs (load the study, ``journeys.work_here``).

Ray is imported here only, and only when a run asks for it. The driver (``cli/run.py``) checks
the options, connects (or starts a local Ray) and sizes the cluster up before any study exists,
then watches the tasks as it watches local worker processes (``RayWorkers`` answers the same
calls). A task ends with the exit code a ``sweeper worker`` process would have; Ray's
cancellation (a KeyboardInterrupt in the task, as Ctrl-C in a worker) is how the driver stops
one, and the loop re-queues its trials. A task whose process dies is replaced by the driver
(``max_retries=0``, so the driver sees the death), after the dead worker's trials are re-queued
as suspects by sweeper's reaper run on every node (a pid is only checked on its own host).
"""

from __future__ import annotations

import math
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from sweeper.errors import SweeperError
from sweeper.store.placement import ENGINE_ENV, INDEX_ENV, NODE_ENV

ENGINE = "ray"
DONE, MAX_FAILURES, INTERRUPTED = 0, 3, 130  # as a `sweeper worker` process ends (cli/common.py)
FAILED, KILLED = 1, -9  # the task raised; its process died (killed, crashed, node lost)
CONNECT_TIMEOUT_S = 5.0  # Ray's own connect retries for a minute or more: refuse at once instead
STOP_WAIT_S = 30.0  # a cancelled task re-queues its trials within a poll; then it is killed
REAP_WAIT_S = 60.0
OBJECT_STORE_BYTES = 128 * 2**20  # a local Ray's object store: only exit codes go through it
NO_FORWARD = {ENGINE_ENV, INDEX_ENV, NODE_ENV, "SWEEPER_SUPERVISOR", "SWEEPER_GPU_MEMORY_MB", "SWEEPER_THREADS"}


@dataclass(frozen=True)
class RayRequest:
    """``--address`` (None: a local Ray), ``--workers``, ``--gpus-per-worker``, ``--cpus-per-worker``."""

    address: str | None
    workers: int
    gpus: float = 0.0
    cpus: float = 1.0


def check(req: RayRequest) -> None:
    """The options' own checks, before Ray is imported."""
    if req.workers < 1:
        raise SweeperError(f"--workers: {req.workers} must be >= 1")
    if not (req.gpus >= 0 and math.isfinite(req.gpus)):
        raise SweeperError(f"--gpus-per-worker: {req.gpus:g} must be >= 0")
    if req.gpus > 1 and req.gpus != int(req.gpus):
        raise SweeperError(f"--gpus-per-worker: {req.gpus:g}: above 1 Ray gives whole GPUs only (1, 2, ...); "
                           "below 1, a share of one GPU (0.5)")
    if not (req.cpus > 0 and math.isfinite(req.cpus)):
        raise SweeperError(f"--cpus-per-worker: {req.cpus:g} must be > 0")
    if req.address is not None:
        _host_port(req.address)


def _host_port(address: str) -> tuple[str, int]:
    if address == "auto":
        return "", 0
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SweeperError(f"--address: {address!r} is not auto, HOST:PORT or ray://HOST:PORT")
    return host, int(port)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SweeperError("--engine ray needs Ray, which is not installed: pip install 'sweeper[ray]'") from None
    return ray


class Cluster:
    """A connected Ray: the one this run started (``local``) or the cluster at ``--address``."""

    def __init__(self, req: RayRequest, ray: Any) -> None:
        self.req, self.ray, self.local = req, ray, req.address is None
        self.where = "the local Ray" if self.local else f"the Ray cluster at {req.address}"

    def store_host(self) -> str:
        """Where this host serves a SQLite store to the workers: one that every node reaches."""
        return "127.0.0.1" if self.local else self.ray.util.get_node_ip_address()

    def start(self, name: str, url: str, max_failures: int | None) -> RayWorkers:
        return RayWorkers(self, name, url, max_failures)

    def close(self) -> None:
        self.ray.shutdown()  # a local Ray stops with it; a cluster only loses this driver


def connect(req: RayRequest) -> tuple[Cluster, str | None]:
    """Connect to ``req.address`` (or start a local Ray) and check that a worker fits on one of
    its nodes; returns the cluster and a note when fewer than ``req.workers`` fit at once."""
    check(req)
    ray = _import_ray()
    import logging

    if req.address is None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a Ray started for one run reports nothing
        kwargs: dict[str, Any] = dict(address="local", include_dashboard=False, object_store_memory=OBJECT_STORE_BYTES)
    else:
        _answers(req.address, ray)
        kwargs = dict(address=req.address)
    try:
        ray.init(logging_level=logging.ERROR, **kwargs)  # its notices would bury the progress bar
    except Exception as exc:  # a version mismatch, a port that is no Ray, ...
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        what = f"--address {req.address}: Ray did not connect" if req.address else \
            "--engine ray: a local Ray did not start"
        raise SweeperError(f"{what}: {why}") from None
    cluster = Cluster(req, ray)
    try:
        return cluster, _size_up(cluster)
    except BaseException:
        cluster.close()
        raise


def _answers(address: str, ray: Any) -> None:
    """Refuse at once an address where no Ray answers (Ray itself retries for minutes)."""
    if address == "auto":
        try:  # Ray's lookup of `ray start`'s cluster (RAY_ADDRESS, then the address it recorded)
            from ray._private.services import canonicalize_bootstrap_address_or_die

            address = canonicalize_bootstrap_address_or_die("auto")
        except Exception as exc:
            raise SweeperError("--address auto: no running Ray cluster was found on this host; start one with "
                               f"'ray start --head' or give its HOST:PORT ({exc})".replace("\n", " ")) from None
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise SweeperError(f"--address {address}: no Ray cluster answers at {host}:{port} "
                           f"({exc.strerror or exc or 'timed out'})") from None


def _times(have: float, need: float) -> float:
    return math.inf if need <= 0 else math.floor(have / need + 1e-9)


def _size_up(cluster: Cluster) -> str | None:
    """One line, nothing created, when no node can hold one worker; a note when not all fit at once."""
    req, where = cluster.req, cluster.where
    nodes = [n.get("Resources") or {} for n in cluster.ray.nodes() if n.get("Alive")]
    gpus = [float(r.get("GPU", 0)) for r in nodes]
    cpus = [float(r.get("CPU", 0)) for r in nodes]
    if req.gpus > 0 and max(gpus, default=0) == 0:
        raise SweeperError(f"--gpus-per-worker {req.gpus:g}: {where} has no GPUs")
    if req.gpus > max(gpus, default=0):
        raise SweeperError(f"--gpus-per-worker {req.gpus:g}: more than any node of {where} has "
                           f"(at most {max(gpus):g} GPUs on one node)")
    if req.cpus > max(cpus, default=0):
        raise SweeperError(f"--cpus-per-worker {req.cpus:g}: more than any node of {where} has "
                           f"(at most {max(cpus, default=0):g} CPUs on one node)")
    fit = sum(min(_times(c, req.cpus), _times(g, req.gpus)) for c, g in zip(cpus, gpus))
    notes = []
    if fit < req.workers:
        notes.append(f"{where} has room for {fit:g} of the {req.workers} workers at once; the others start "
                     "as room frees")
    if req.gpus == 0 and sum(gpus):
        notes.append(f"{where} has {sum(gpus):g} GPU(s); without --gpus-per-worker the workers use none")
    return "; ".join(notes) or None


def _forwarded_env() -> dict[str, str]:
    """What each task's process gets from the driver: sweeper's own settings, TensorFlow's log
    level, and an import path of this folder and $PYTHONPATH (a trial function or model module
    beside the sweep file; the nodes need the same paths, or the modules installed)."""
    env = {k: v for k, v in os.environ.items() if k.startswith("SWEEPER_") and k not in NO_FORWARD}
    env.update({k: os.environ[k] for k in ("TF_CPP_MIN_LOG_LEVEL", "ABSL_MIN_LOG_LEVEL") if k in os.environ})
    path = [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(p for p in path if p))
    return env


class RayWorkers:
    """The run's Ray tasks, watched by the driver as it watches local worker processes:
    ``codes()`` (None while one runs), ``why``, ``restart``, ``interrupt``, ``wait``, ``reap``."""

    def __init__(self, cluster: Cluster, name: str, url: str, max_failures: int | None) -> None:
        self.ray, self.cluster = cluster.ray, cluster
        req = cluster.req
        self.runtime_env = {"env_vars": _forwarded_env()}
        self.task = self.ray.remote(_work)
        self.resources = dict(num_cpus=req.cpus, num_gpus=req.gpus, max_retries=0, scheduling_strategy="SPREAD",
                              runtime_env=self.runtime_env)
        self.args = (name, url, max_failures, req.gpus, req.cpus, os.getcwd())
        self.refs = [self._submit(i) for i in range(req.workers)]
        self._codes: list[int | None] = [None] * req.workers
        self._why = [""] * req.workers

    def _submit(self, index: int) -> Any:
        named = self.task.options(name=f"sweeper {self.args[0]} worker {index}", **self.resources)
        return named.remote(index, *self.args)

    def __len__(self) -> int:
        return len(self.refs)

    def sleep(self, seconds: float) -> None:
        running = [r for r, c in zip(self.refs, self._codes) if c is None]
        if running:
            self.ray.wait(running, num_returns=1, timeout=seconds)
        else:
            time.sleep(seconds)

    def codes(self) -> list[int | None]:
        for slot, ref in enumerate(self.refs):
            if self._codes[slot] is None and self.ray.wait([ref], timeout=0)[0]:
                self._codes[slot], self._why[slot] = self._ended(ref)
        return list(self._codes)

    def _ended(self, ref: Any) -> tuple[int, str]:
        exc = self.ray.exceptions
        try:
            code = int(self.ray.get(ref))
            return code, f"exited with {code}"
        except exc.TaskCancelledError:
            return INTERRUPTED, "was stopped"
        except exc.RayTaskError as err:  # the task raised: its own error, in one line
            cause = getattr(err, "cause", None) or err
            text = (str(cause).strip().splitlines() or [""])[-1]
            return FAILED, f"failed: {type(cause).__name__}: {text}"
        except exc.RayError as err:  # its process or node died
            return KILLED, f"died ({type(err).__name__}: its Ray worker process ended)"

    def why(self, slot: int) -> str:
        return self._why[slot]

    def restart(self, slot: int, index: int) -> None:
        self.refs[slot] = self._submit(index)
        self._codes[slot], self._why[slot] = None, ""

    def interrupt(self) -> None:
        """Each running task gets a KeyboardInterrupt: its loop re-queues its trials and it ends."""
        for ref, code in zip(self.refs, self._codes):
            if code is None:
                self.ray.cancel(ref)

    def wait(self) -> None:
        """Until every task ended; one still running after STOP_WAIT_S is killed (its trials are
        then a dead worker's, re-queued by ``reap``)."""
        end = time.monotonic() + STOP_WAIT_S
        while None in self.codes() and time.monotonic() < end:
            self.sleep(0.5)
        for ref, code in zip(self.refs, self.codes()):
            if code is None:
                self.ray.cancel(ref, force=True)
        while None in self.codes():
            self.sleep(0.5)

    def reap(self, study: Any) -> None:
        """Re-queue the trials of dead workers: here, and, while any trial still runs, on every
        node (a worker's pid is checked on its own host; nodes may share one)."""
        from optuna.trial import TrialState

        from sweeper.store.trials import reap_dead_trials

        reap_dead_trials(study)
        if not study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            return
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        reaper = self.ray.remote(_reap)
        refs = [reaper.options(name=f"sweeper {self.args[0]} reaper", num_cpus=0, runtime_env=self.runtime_env,
                               scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(*self.args[:2]) for n in self.ray.nodes() if n.get("Alive")]
        self.ray.wait(refs, num_returns=len(refs), timeout=REAP_WAIT_S)


# --------------------------------------------------------------------------- in the Ray worker
def _work(index: int, name: str, url: str, max_failures: int | None, gpus: float, cpus: float, cwd: str) -> int:
    """One Ray task: ``sweeper worker NAME --index INDEX``'s journey, placed where Ray put it."""
    import ray

    os.environ.update({ENGINE_ENV: ENGINE, NODE_ENV: ray.get_runtime_context().get_node_id(),
                       **_devices(gpus, cpus, ray.get_gpu_ids())})
    if os.path.isdir(cwd):
        os.chdir(cwd)  # relative paths as the driver's (a shared file system, or one host)
    _quiet()
    from sweeper.errors import MaxFailuresReached
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import load
    from sweeper.worker import journeys

    try:
        study, spec = load(name, make_storage(url, must_exist=True))
        journeys.work_here(study, spec, url, index, max_failures)
    except KeyboardInterrupt:  # ray.cancel: the loop re-queued the trials it ran
        return INTERRUPTED
    except MaxFailuresReached:
        return MAX_FAILURES
    return DONE


def _devices(gpus: float, cpus: float, assigned: list[Any]) -> dict[str, str]:
    """The worker's devices, before TensorFlow starts: the GPUs Ray assigned (a share of one:
    capped at that share of its memory, as --trials-per-gpu caps), or none and C threads."""
    from sweeper.train.devices import MEMORY_ENV, THREADS_ENV, detect_gpus, memory_share_mb

    if gpus <= 0:
        return {"CUDA_VISIBLE_DEVICES": "", THREADS_ENV: str(max(1, int(cpus)))}
    ids = [str(i) for i in assigned]
    env = {"CUDA_VISIBLE_DEVICES": ",".join(ids)}
    if gpus < 1 and ids:
        memory = {str(g.index): g.memory_mb for g in detect_gpus()}
        if ids[0] in memory:  # a real GPU (a cluster may declare logical ones)
            env[MEMORY_ENV] = str(memory_share_mb(memory[ids[0]], gpus))
    return env


def _quiet() -> None:
    """Optuna's info lines and experimental warnings off, as the command line sets them."""
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _reap(name: str, url: str) -> int:
    """On one node: re-queue the trials whose worker on this host died."""
    from sweeper.store.storage import make_storage
    from sweeper.store.studies import load
    from sweeper.store.trials import reap_dead_trials

    study, _ = load(name, make_storage(url, must_exist=True))
    return reap_dead_trials(study)
