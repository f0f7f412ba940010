"""A study -> TensorBoard's HParams dashboard: ``hparams_config`` at the folder's top (a domain per
searched parameter from the sweep's space, a metric per objective and stored metric), one run
``trial-NNNN`` per trial with its ``hparams``, its end status, its final metrics and its per-epoch
validation curve as scalars. Written with TensorBoard's own event writer and the hparams plugin's
protos: no TensorFlow. Re-exporting replaces the folder's runs."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import optuna

from sweeper.config.spec import ParamSpec, SweepSpec
from sweeper.errors import SweeperError
from sweeper.report.tracking import TrialRecord, metric_names, records

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


def _hparams(spec: SweepSpec, recs: list[TrialRecord]) -> tuple[list[Any], dict[str, type]]:
    """An ``hp.HParam`` per searched parameter (domains from the sweep's space), and ``state``."""
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
    out.append(hp.HParam("state", hp.Discrete(sorted({r.outcome for r in recs}) or ["complete"])))
    return out, kinds


def _clear(folder: Path) -> None:
    """Remove the runs and config an earlier export wrote (so an export never duplicates)."""
    for f in folder.glob("events.out.tfevents.*"):
        f.unlink()
    for d in folder.glob(f"{RUN_PREFIX}*"):
        if d.is_dir() and any(d.glob("events.out.tfevents.*")):
            shutil.rmtree(d)


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


class _Writer:
    """One event file of one run folder, written with TensorBoard's record writer (its
    ``EventFileWriter`` would import TensorFlow, when installed, only to make the folder)."""

    def __init__(self, folder: Path) -> None:
        from tensorboard.summary.writer.record_writer import RecordWriter

        folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.sweeper"
        self._file = open(folder / name, "wb")
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


def export(study: optuna.Study, spec: SweepSpec, out: str | Path) -> int:
    """Write the study's HParams runs into ``out`` (replacing an earlier export's); returns how
    many trial runs were written."""
    from tensorboard.plugins.hparams import summary_v2 as hp

    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _clear(folder)
    except OSError as exc:
        raise SweeperError(f"--out {out}: cannot write ({exc.strerror})") from None
    recs = records(study, spec)
    hparams, kinds = _hparams(spec, recs)
    metrics = [hp.Metric(name, display_name=name) for name in metric_names(spec)]
    metrics.append(hp.Metric(curve_tag(spec), display_name=f"val_{spec.metric} per epoch"))
    top = _Writer(folder)
    top.summary(hp.hparams_config_pb(hparams=hparams, metrics=metrics))
    top.close()
    for r in recs:
        writer = _Writer(folder / run_name(r.number))
        values = {name: _as(kinds[name], v) for name, v in r.params.items()}
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
    return len(recs)
