"""The notebook API: the CLI's journeys as Python calls, with results as pandas DataFrames.

    import sweeper
    s = sweeper.run("sweeps/quickstart.yaml")          # progress bar (Jupyter too), report at the end
    s.results()                                          # one row per trial, like cv_results_
    s.best()                                             # the best trial's number, score and params
    s                                                    # in Jupyter: summary + the report's parallel plot
    sweeper.resume("quickstart", trials=20)              # continue, or raise the budget
    sweeper.load("quickstart").plot()                    # the same plot, inline
    sweeper.load("quickstart").model(3)                  # trial 3's kept Keras model (artifacts: {keep: K})
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

from sweeper.config.spec import (
    DEFAULT_STORAGE,
    SweepSpec,
    load_spec,
    spec_from_dict,
)
from sweeper.store.progress import Progress, best_trial, progress
from sweeper.store.storage import make_storage
from sweeper.store.studies import load as load_study
from sweeper.worker import journeys


class _Html:
    def __init__(self, html: str) -> None:
        self.html = html

    def _repr_html_(self) -> str:
        return self.html


@dataclass
class Sweep:
    """A study and its sweep definition, as a notebook sees them."""

    study: optuna.Study
    spec: SweepSpec

    def progress(self) -> Progress:
        return progress(self.study, self.spec)

    def results(self, all_trials: bool = False) -> Any:
        """One row per scored trial (``all_trials``: every trial, with its state), as a DataFrame
        with ``param_*``, ``mean_test_score``, ``std_test_score``, ``mean_fit_time`` columns."""
        import pandas as pd

        from sweeper.store import results

        rows = [r for r in results.rows(self.study) if all_trials or r["state"] == "complete"]
        return pd.DataFrame(rows).set_index("number") if rows else pd.DataFrame()

    def best(self) -> dict[str, Any] | None:
        """The best trial (None before one completes). With several objectives there is no single
        best: this raises, as ``sweeper best`` does, naming the Pareto trials (see ``pareto()``)."""
        if self.spec.multi_objective:
            from sweeper.deliver import top_trials

            top_trials(self.study, self.spec, 1)  # raises, listing the Pareto trials
        t = best_trial(self.study, self.spec.direction)
        return None if t is None else {"number": t.number, "value": t.value, "params": dict(t.params)}

    def pareto(self) -> list[dict[str, Any]]:
        """The Pareto trials (feasible, non-dominated), each with its values by objective name."""
        from sweeper.store.pareto import pareto_front

        front = pareto_front(self.study.get_trials(deepcopy=False), self.spec.directions)
        return [{"number": t.number, "values": dict(zip(self.spec.objective_names, t.values)), "params": dict(t.params)}
                for t in front]

    def model(self, number: int) -> Any:
        """The Keras model kept for trial ``number`` (``artifacts: {keep: K}``; with k-fold or
        repeats, its first fit's), loaded from the artifact store without training; a
        ``SweeperError`` names what is missing (no such trial, not kept, removed, a missing file)."""
        from sweeper.deliver import load_kept

        return load_kept(self.study, self.spec, number, first_only=True)[1][0]

    def report(self, out_dir: str | Path = "reports") -> Path:
        from sweeper.report import write_report

        return write_report(self.study, self.spec, out_dir)

    def plot(self) -> _Html:
        """The report's parallel-coordinates plot, shown inline by Jupyter."""
        from sweeper.report import plot_html

        return _Html(plot_html(self.study, self.spec))

    def _repr_html_(self) -> str:
        from sweeper.report.escape import esc

        p = self.progress()
        best = "n/a" if p.best is None else f"{p.best:.4f}"
        head = f"<p><b>{esc(self.spec.name)}</b>: {esc(p.text())}; best {esc(self.spec.metric)} {best}</p>"
        return head + self.plot().html


def _spec(sweep: SweepSpec | str | Path | dict[str, Any]) -> SweepSpec:
    if isinstance(sweep, SweepSpec):
        return sweep
    if isinstance(sweep, dict):
        return spec_from_dict(sweep, source="(dict)")
    return load_spec(sweep)


def _work(study: optuna.Study, spec: SweepSpec, url: str, show_progress: bool, report: bool) -> Sweep:
    on_trial = None
    bar = None
    if show_progress:
        from tqdm.auto import tqdm  # a widget in Jupyter, text elsewhere

        start = progress(study, spec)
        bar = tqdm(total=start.budget, initial=start.finished, unit="trial", desc=spec.name)

        def on_trial(p: Progress) -> None:
            bar.n = p.finished
            bar.set_postfix_str(f"best {p.best if p.best is None else round(p.best, 4)}; {p.counts()}")
            bar.refresh()
    try:
        journeys.work_here(study, spec, url, on_trial=on_trial)
    finally:
        if bar is not None:
            bar.close()
    sweep = Sweep(study, spec)
    done = sweep.progress() if report else None
    if done is not None and done.complete + done.warm:
        sweep.report()
    return sweep


def run(sweep: SweepSpec | str | Path | dict[str, Any], storage: str | None = None, *,
        report: bool = True, show_progress: bool = True) -> Sweep:
    """``sweeper run``: create (or continue, or grow) the study and train it to its budget in this
    process; writes ``reports/NAME/index.html`` unless ``report=False``."""
    spec = _spec(sweep)
    url = storage or spec.storage
    return _work(journeys.open_run(spec, url), spec, url, show_progress, report)


def resume(name: str, storage: str = DEFAULT_STORAGE, *, trials: int | None = None, report: bool = True,
           show_progress: bool = True) -> Sweep:
    """``sweeper resume``: re-queue dead trials, optionally raise the budget, and continue."""
    study, spec, _ = journeys.open_resume(name, storage, trials)
    return _work(study, spec, storage, show_progress, report)


def load(name: str, storage: str = DEFAULT_STORAGE) -> Sweep:
    """A stored study, to browse: ``results()``, ``best()``, ``plot()``, ``report()``."""
    return Sweep(*load_study(name, make_storage(storage, must_exist=True, readonly=True)))


def open_study(name: str, storage: str = DEFAULT_STORAGE) -> tuple[optuna.Study, SweepSpec]:
    """The Optuna study and the sweep definition stored with it."""
    return load_study(name, make_storage(storage, must_exist=True, readonly=True))


def run_sweep(spec: SweepSpec | str | Path, storage: str | None = None) -> optuna.Study:
    """Run (or continue) a sweep in this process, quietly, without a report; returns the study."""
    return run(spec, storage, report=False, show_progress=False).study
