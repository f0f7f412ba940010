"""Parameter importances from Optuna's evaluators, bounded in time for large studies (with
several objectives, importances of the first).

Both evaluators see one fixed random sample of at most ``SAMPLE_MAX`` completed trials. fANOVA
with fully grown trees grows steeply with the trials (about 23 s for 2,000 on one core); its
forest here has ``FANOVA_TREES`` trees of depth ``FANOVA_DEPTH``. On the 2,000-trial benchmark
study (``benchmarks/report.py --objectives 2``) that took 0.32 s with every importance within
0.003 of fully grown trees on all 2,000 trials, where the earlier 100-trial sample of fully grown
trees took 0.66 s and was 0.07 off. Mean decrease in impurity (a random forest) is cheap (on the
10,000-trial benchmark study a sample of 500 gave the same ranking as 2,000, each importance
within 0.035).

Without scikit-learn already imported (a ``sweeper report`` process), importing the evaluators
costs about 2 s, as long as the rest of a 2,000-trial report: with ``WORKER_MIN_TRIALS`` or more
completed trials and a second core, the first report of a process has them imported and run in a
second Python process while this one draws the figures (``start``); later reports, and any when
that process cannot be had, run them here.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from optuna.trial import FrozenTrial, TrialState

from sweeper.store.keys import DUPLICATE_OF_ATTR

SAMPLE_MAX = 500
FANOVA_TREES = 8
FANOVA_DEPTH = 6
MDI_TREES = 32
WORKER_MIN_TRIALS = 200
TOO_FEW = "too few completed trials (or no parameter varies) to estimate importances"


@dataclass
class Importances:
    """Per evaluator: parameter -> importance (sums to 1), and how many trials it saw."""

    by_evaluator: dict[str, dict[str, float]] = field(default_factory=dict)
    n_trials: dict[str, int] = field(default_factory=dict)
    note: str = ""
    # A conditional parameter's importance is its share among the trials that have it: how many.
    within: dict[str, int] = field(default_factory=dict)

    def order(self) -> list[str]:
        """Parameters, most important first (by the evaluator that saw the most trials)."""
        if not self.by_evaluator:
            return []
        key = max(self.by_evaluator, key=lambda k: self.n_trials.get(k, 0))
        scores = self.by_evaluator[key]
        return sorted(scores, key=lambda p: -scores[p])

    def score(self, param: str) -> float | None:
        if not self.by_evaluator:
            return None
        key = max(self.by_evaluator, key=lambda k: self.n_trials.get(k, 0))
        return self.by_evaluator[key].get(param)


@dataclass
class _Inputs:
    """What the evaluators need, as plain JSON: the sample's params, distributions and values."""

    directions: list[str]
    params: list[str]
    rows: list[dict[str, Any]]


def _inputs(study: optuna.Study, params: list[str]) -> _Inputs | None:
    """The sample the evaluators see; None when the trials cannot support importances."""
    # A sampler's duplicate took its twin's result: counted too, it would weigh that point double.
    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if t.values and t.user_attrs.get(DUPLICATE_OF_ATTR) is None]
    varying = [p for p in params if len({repr(t.params.get(p)) for t in done if p in t.params}) > 1]
    if len(done) < 3 or not varying:
        return None
    # Sorted: Optuna 5.0's mean-decrease-impurity evaluator pairs importances with the names in
    # sorted order whatever order it is given, so any other order mislabels them.
    varying = sorted(varying)
    sample = done if len(done) <= SAMPLE_MAX else random.Random(0).sample(done, SAMPLE_MAX)
    # A conditional parameter is absent from some rows (``_evaluate`` groups them).
    rows = [{"params": {p: t.params[p] for p in varying if p in t.params},
             "distributions": {p: distribution_to_json(t.distributions[p]) for p in varying if p in t.params},
             "values": list(t.values)} for t in sample]
    return _Inputs([d.name.lower() for d in study.directions], varying, rows)


def _first(t: FrozenTrial) -> float:
    return t.values[0]  # several objectives: importances for the first


def _groups(inputs: _Inputs) -> list[tuple[list[dict[str, Any]], list[str], list[str]]]:
    """What each evaluation sees: (rows, the params they all have, the params it scores). The
    params every row has are scored over all rows; a conditional one over the rows that have it
    (with every param those rows all have), so that it is compared only where it exists."""
    def shared(rows: list[dict[str, Any]]) -> list[str]:
        return [p for p in inputs.params if all(p in r["params"] for r in rows)]

    base = shared(inputs.rows)
    out = [(inputs.rows, base, base)] if base else []
    for p in inputs.params:
        rows = [r for r in inputs.rows if p in r["params"]]
        if p not in base and len(rows) >= 3 and len({repr(r["params"][p]) for r in rows}) > 1:
            out.append((rows, shared(rows), [p]))
    return out


def _evaluate(inputs: _Inputs) -> Importances:
    from optuna.importance import (
        FanovaImportanceEvaluator,
        MeanDecreaseImpurityImportanceEvaluator,
        get_param_importances,
    )

    evaluators = (
        ("fANOVA", FanovaImportanceEvaluator(seed=0, n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH)),
        ("mean decrease impurity", MeanDecreaseImpurityImportanceEvaluator(seed=0, n_trees=MDI_TREES)),
    )
    out = Importances()
    for rows, params, scored in _groups(inputs):
        # A throwaway in-memory study holding only what the evaluators read (it deep-copies each
        # trial it is given: a stored trial's curve and attributes would be most of the cost).
        sub = optuna.create_study(directions=inputs.directions)
        sub.add_trials([optuna.trial.create_trial(
            params={p: r["params"][p] for p in params}, values=r["values"],
            distributions={p: json_to_distribution(r["distributions"][p]) for p in params},
        ) for r in rows])
        if len(rows) < len(inputs.rows):
            out.within.update({p: len(rows) for p in scored})
        for label, evaluator in evaluators:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    scores = get_param_importances(sub, evaluator=evaluator, params=params, normalize=True,
                                                   target=_first if len(inputs.directions) > 1 else None)
            except Exception as exc:  # degenerate data (e.g. constant objective): skip this evaluator
                out.note = f"{label}: {type(exc).__name__}"
                continue
            out.by_evaluator.setdefault(label, {}).update({k: float(v) for k, v in scores.items() if k in scored})
            out.n_trials[label] = len(inputs.rows)
    return out


_worker_used = False  # once per process: later reports pay the import here once, then nothing


def _worth_a_worker(inputs: _Inputs) -> bool:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return (len(inputs.rows) >= WORKER_MIN_TRIALS and cores >= 2 and not _worker_used
            and "sklearn" not in sys.modules)


def _in_worker(inputs: _Inputs) -> Callable[[], Importances]:
    """Start ``python -m sweeper.report.importance FILE`` on ``inputs``; the returned call waits
    for its answer (computing here instead if that process failed)."""
    fd, name = tempfile.mkstemp(prefix="sweeper-importances-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(asdict(inputs), f)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2])] + [p for p in [os.environ.get("PYTHONPATH")] if p])}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "sweeper.report.importance", name], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    except OSError:
        os.unlink(name)
        raise

    def wait() -> Importances:
        try:
            out, _ = proc.communicate(timeout=120)
            if proc.returncode == 0:
                return Importances(**json.loads(out))
        except (subprocess.TimeoutExpired, ValueError, TypeError):
            proc.kill()
            proc.wait()
        finally:
            os.unlink(name)
        return _evaluate(inputs)

    return wait


def start(study: optuna.Study, params: list[str]) -> Callable[[], Importances]:
    """Begin estimating the importances of ``params`` for the study's (first) objective; call
    the result for them (empty, with a note, when fewer than 3 trials completed or no parameter
    varies). Large studies are evaluated in a second process meanwhile (module docstring)."""
    inputs = _inputs(study, params)
    if inputs is None:
        return lambda: Importances(note=TOO_FEW)
    if _worth_a_worker(inputs):
        global _worker_used
        _worker_used = True
        try:
            return _in_worker(inputs)
        except OSError:
            pass  # no second process to be had (e.g. no python executable): here instead
    return lambda: _evaluate(inputs)


def importances(study: optuna.Study, params: list[str]) -> Importances:
    """The importances of ``params`` for the study's (first) objective, computed now."""
    return start(study, params)()


def _main(path: str) -> int:
    inputs = _Inputs(**json.loads(Path(path).read_text(encoding="utf-8")))
    sys.stdout.write(json.dumps(asdict(_evaluate(inputs))))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1]))
