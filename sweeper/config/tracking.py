"""``tracking: {tensorboard: DIR, mlflow: URI, experiment: NAME}``: where the worker that ran a
trial writes it as soon as it is told (tracking/live.py), the same runs ``sweeper export
--format tensorboard|mlflow`` writes. Validated here for its shape only: ``run`` checks that the
MLflow tracking URI can be reached before the sweep starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sweeper.config.values import shown
from sweeper.errors import SpecError

DEFAULT_EXPERIMENT = "sweeper"
KEYS = ("tensorboard", "mlflow", "experiment")


@dataclass(frozen=True)
class Tracking:
    tensorboard: str | None = None  # a folder: TensorBoard's HParams runs
    mlflow: str | None = None  # a tracking URI: file:///DIR, http://HOST:PORT, ...
    experiment: str = DEFAULT_EXPERIMENT  # the MLflow experiment

    @property
    def active(self) -> bool:
        return bool(self.tensorboard or self.mlflow)


def parse_tracking(source: str, raw: Any) -> Tracking:
    if raw is None:
        return Tracking()
    if not isinstance(raw, dict):
        raise SpecError(source, "tracking", f"{shown(raw)} is not a mapping (e.g. 'tracking: {{tensorboard: tb}}')")
    for k in raw:
        if k not in KEYS:
            raise SpecError(source, f"tracking.{k}", f"unknown key (allowed: {', '.join(KEYS)})")
    if not raw.get("tensorboard") and not raw.get("mlflow"):
        raise SpecError(source, "tracking", "give 'tensorboard: DIR', 'mlflow: URI' or both")
    what = {"tensorboard": "folder path", "mlflow": "tracking URI (e.g. file:///DIR or http://HOST:PORT)",
            "experiment": "experiment name"}
    for key in KEYS:
        v = raw.get(key)
        if key in raw and (not isinstance(v, str) or not v.strip()):
            raise SpecError(source, f"tracking.{key}", f"{shown(v)} is not a {what[key]}")
    if "experiment" in raw and "mlflow" not in raw:
        raise SpecError(source, "tracking.experiment", "an MLflow experiment goes with 'mlflow: URI'")
    return Tracking(*(raw[k].strip() if k in raw else None for k in KEYS[:2]),
                    raw.get("experiment", DEFAULT_EXPERIMENT).strip())
