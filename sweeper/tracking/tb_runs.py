"""TensorBoard's HParams runs, written by the export (report/tensorboard_export.py) and by the
live sink (tracking/live.py) alike: ``hparams_config`` at the folder's top (a domain per searched
parameter from the sweep's space, a metric per objective and stored metric), one run
``trial-NNNN`` per trial with its ``hparams``, its end status, its final metrics and its per-epoch
validation curve as scalars. Written with TensorBoard's own event writer and the hparams plugin's
protos: no TensorFlow. Writing a run (or the config) again replaces the earlier one."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweeper.config.spec import ParamSpec, SweepSpec
from sweeper.tracking.records import TrialRecord, metric_names

RUN_PREFIX = "trial-"
CURVE_PREFIX = "epoch/"  # the curve's tag: epoch/val_<first objective>, one step per epoch
# How a trial ended -> the hparams plugin's session status (it has no word for pruned: the run's
# `state` hparam says it).
SESSION_STATUS = {"complete": "STATUS_SUCCESS", "pruned": "STATUS_UNKNOWN", "fail": "STATUS_FAILURE",
                  "running": "STATUS_RUNNING", "waiting": "STATUS_UNKNOWN"}


def run_name(number: int) -> str:
    return f"{RUN_PREFIX}{number:04d}"


def curve_tag(spec: SweepSpec) -> str:
    return f"{CURVE_PREFIX}val_{spec.metric}"


def _kind(values: list[Any]) -> type:
    """One type for a parameter's values (TensorBoard's Discrete domain holds one): numbers as
    floats, booleans, else text."""
    if values and all(isinstance(v, bool) for v in values):
        return bool
    if values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return float
    return str


def _as(kind: type, v: Any) -> Any:
    if kind in (float, int, bool):
        return kind(v)
    return str(v)


def hparams(spec: SweepSpec, recs: list[TrialRecord],
            states: Sequence[str] = ()) -> tuple[list[Any], dict[str, type]]:
    """An ``hp.HParam`` per searched parameter (domains from the sweep's space), and ``state``
    (the records' outcomes and ``states``)."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    out, kinds = [], {}
    names = list(spec.params) + [n for r in recs for n in r.params if n not in spec.params]
    for name in dict.fromkeys(names):
        p: ParamSpec | None = spec.params.get(name)
        seen = [r.params[name] for r in recs if name in r.params]
        if p is not None and p.values is not None:
            kinds[name] = _kind(list(p.values) + seen)
            domain = hp.Discrete(sorted({_as(kinds[name], v) for v in (*p.values, *seen)}, key=str))
        elif p is not None and p.is_int:
            kinds[name], domain = int, hp.IntInterval(int(p.low), int(p.high))
        elif p is not None:
            kinds[name], domain = float, hp.RealInterval(float(p.low), float(p.high))
        else:  # a parameter of an earlier revision of a grown study
            kinds[name], domain = _kind(seen), None
        out.append(hp.HParam(name, domain))
    kinds["state"] = str
    out.append(hp.HParam("state", hp.Discrete(sorted({r.outcome for r in recs} | set(states)) or ["complete"])))
    return out, kinds


def events(folder: Path) -> list[Path]:
    return list(folder.glob("events.out.tfevents.*"))


def clear(folder: Path) -> None:
    """Remove the runs and config an earlier export (or live sink) wrote (so none duplicates)."""
    for f in events(folder):
        f.unlink(missing_ok=True)
    for d in folder.glob(f"{RUN_PREFIX}*"):
        if d.is_dir() and events(d):
            shutil.rmtree(d, ignore_errors=True)


def _session_end(r: TrialRecord) -> Any:
    """The hparams plugin's session-end summary (how the trial ended), built from tensorboard's
    own protos (the plugin's ``session_end_pb`` needs TensorFlow)."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    info = plugin_data_pb2.SessionEndInfo(status=getattr(api_pb2, SESSION_STATUS.get(r.state, "STATUS_UNKNOWN")),
                                          end_time_secs=r.end_s or time.time())
    meta = metadata.create_summary_metadata(plugin_data_pb2.HParamsPluginData(session_end_info=info))
    return summary_pb2.Summary(value=[summary_pb2.Summary.Value(
        tag=metadata.SESSION_END_INFO_TAG, metadata=meta, tensor=metadata.NULL_TENSOR)])


class Writer:
    """One event file of one run folder, written with TensorBoard's record writer (its
    ``EventFileWriter`` would import TensorFlow, when installed, only to make the folder)."""

    def __init__(self, folder: Path) -> None:
        from tensorboard.summary.writer.record_writer import RecordWriter

        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.sweeper"
        self.path = folder / name
        self._file = open(self.path, "wb")
        self._w = RecordWriter(self._file)
        self._event(file_version="brain.Event:2")

    def _event(self, wall: float | None = None, **fields: Any) -> None:
        from tensorboard.compat.proto import event_pb2

        self._w.write(event_pb2.Event(wall_time=wall or time.time(), **fields).SerializeToString())

    def summary(self, summary: Any, step: int = 0, wall: float | None = None) -> None:
        self._event(wall, step=step, summary=summary)

    def scalar(self, tag: str, value: float, step: int, wall: float | None = None) -> None:
        from tensorboard.compat.proto import summary_pb2

        self.summary(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)]), step, wall)

    def close(self) -> None:
        self._w.flush()
        self._file.close()


def write_config(folder: Path, spec: SweepSpec, recs: list[TrialRecord],
                 states: Sequence[str] = ()) -> dict[str, type]:
    """The folder's top-level ``hparams_config`` (replacing one written before; ``states``: the
    outcomes ``state`` may take besides the records'); returns each hparam's value type, for
    ``write_trial``."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    params, kinds = hparams(spec, recs, states)
    metrics = [hp.Metric(name, display_name=name) for name in metric_names(spec)]
    metrics.append(hp.Metric(curve_tag(spec), display_name=f"val_{spec.metric} per epoch"))
    folder.mkdir(parents=True, exist_ok=True)
    old = events(folder)
    top = Writer(folder)
    top.summary(hp.hparams_config_pb(hparams=params, metrics=metrics))
    top.close()
    for f in old:
        if f != top.path:
            f.unlink(missing_ok=True)
    return kinds


def write_trial(folder: Path, spec: SweepSpec, r: TrialRecord, kinds: dict[str, type]) -> None:
    """Run ``trial-NNNN`` of one trial, replacing what an earlier write left in its folder."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    run = folder / run_name(r.number)
    old = events(run) if run.is_dir() else []
    writer = Writer(run)
    values = {name: _as(kinds.get(name, _kind([v])), v) for name, v in r.params.items()}
    values["state"] = r.outcome
    writer.summary(hp.hparams_pb(values, trial_id=f"{spec.name}/{r.number}", start_time_secs=r.start_s),
                   wall=r.start_s)
    for epoch, value in enumerate(r.curve):
        writer.scalar(curve_tag(spec), value, epoch, r.start_s)
    last = max(len(r.curve) - 1, 0)
    for name, value in r.metrics.items():
        writer.scalar(name, value, last, r.end_s)
    writer.summary(_session_end(r), step=last, wall=r.end_s)
    writer.close()
    for f in old:
        if f != writer.path:
            f.unlink(missing_ok=True)
