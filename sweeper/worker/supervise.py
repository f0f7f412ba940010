"""Suspects run alone, under a live supervisor: how a worker's death is charged to the trial
that caused it and to no other.

A trial that was running when its worker died (killed from outside, a lost host, a crash of its
own, a pack-mate's crash) is re-queued as a *suspect* and never failed for that death. A loop that
finds queued suspects runs them here before anything else: it starts a worker process of its own
(``sweeper worker NAME --suspects``), which claims the suspects one at a time and trains each
alone (unfused: loop.run_suspects_here), and it watches that process. A loop without a store URL
(an in-memory study) runs them itself, unwatched: a death there is nobody's. Only a death this supervisor sees while the
process runs a suspect alone counts against that suspect (``store.trials.fail_dead``); at
``max_worker_deaths`` it fails for good. If the supervisor itself is killed, its worker dies with
it (``die_with_supervisor``) and the suspect stays a suspect, uncounted.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
from typing import Any

import optuna
from optuna.trial import TrialState

from sweeper.config.spec import SweepSpec
from sweeper.errors import SweeperError
from sweeper.store.keys import OWNER_ATTR
from sweeper.store.placement import worker_env
from sweeper.store.trials import (
    HOST,
    SUPERVISOR_ENV,
    fail_dead,
    owner_record,
    queued_suspects,
)

EXIT_INTERRUPTED = 130  # the worker's Ctrl-C exit (cli/common.py says the same)


def run_suspects(study: optuna.Study, spec: SweepSpec, storage_url: str) -> bool:
    """Run every queued suspect alone, in a supervised worker process (``sweeper worker NAME
    --suspects``, which calls loop.run_suspects_here) that reaches the store by ``storage_url``.
    False when a worker ended without taking any (another worker took them, or it could not run):
    the caller then waits before trying again, rather than starting workers in a tight loop."""
    cmd = [sys.executable, "-m", "sweeper", "worker", spec.name, "--storage", storage_url, "--suspects", "--quiet"]
    # The worker imports what this process can (a trial function or builder beside a notebook).
    path = os.pathsep.join([p or os.getcwd() for p in sys.path] + [os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, SUPERVISOR_ENV: json.dumps(owner_record()), "PYTHONPATH": path, **worker_env()}
    while (queued := queued_suspects(study)):
        proc = subprocess.Popen(cmd, env=env)
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # the worker got the same Ctrl-C: it re-queues its trial and exits
            _stop(proc)
            raise
        if code in (0, EXIT_INTERRUPTED):
            if queued_suspects(study) >= queued and not _owned_by(study, proc.pid):
                return False  # it took none
            continue
        killed = code < 0 or code > 128  # a signal (the OOM killer's SIGKILL, a crash) or os._exit(137)
        how = _ending(code)
        for t in _owned_by(study, proc.pid):
            fail_dead(study, t, f"worker pid {proc.pid} on {HOST} ended with {how} while running this trial alone",
                      counted=killed)
        if not killed:
            raise SweeperError(f"the worker that runs suspect trials alone ended with {how}; see its output above")
    return True


def die_with_supervisor() -> None:
    """In a supervised worker: be killed when the supervisor dies (Linux's parent-death signal),
    so that no orphan trains on, and stop now if it is already gone."""
    raw = os.environ.get(SUPERVISOR_ENV)
    if not raw:
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: an orphan finishes its trial, whose tell then finds it re-queued
    if os.getppid() != int(json.loads(raw).get("pid", -1)):
        os._exit(EXIT_INTERRUPTED)


def _ending(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _owned_by(study: optuna.Study, pid: int) -> list[Any]:
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if (t.system_attrs.get(OWNER_ATTR) or {}).get("pid") == pid
            and (t.system_attrs.get(OWNER_ATTR) or {}).get("host") == HOST]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=60)
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        proc.kill()
        proc.wait()
