"""``show``'s lines for several objectives and constraints: the Pareto set and which trials are
over a constraint's limit (the front and feasibility are decided in store/pareto.py)."""

from __future__ import annotations

from typing import Any, Sequence

import optuna

from sweeper.config.spec import SweepSpec
from sweeper.store.pareto import constraint_values


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _table(rows: list[dict[str, str]]) -> list[str]:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    return ["  ".join(c.ljust(widths[c]) for c in cols)] + [
        "  ".join(r[c].ljust(widths[c]) for c in cols) for r in rows]


def infeasible_lines(study: optuna.Study, spec: SweepSpec) -> list[str]:
    """One line per completed trial over a limit, naming each constraint it breaks."""
    if not spec.constraints:
        return []
    bad, ok = [], 0
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        values = constraint_values(t)
        if values is None:
            continue
        broken = [f"{c.metric} {_fmt(v + c.limit if c.bound == 'max' else c.limit - v)} breaks {c.label()}"
                  for c, v in zip(spec.constraints, values) if v > 0]
        if broken:
            bad.append(f"  trial {t.number}: infeasible, {'; '.join(broken)}")
        else:
            ok += 1
    limits = ", ".join(c.label() for c in spec.constraints)
    return [f"\nconstraints ({limits}): {ok} feasible, {len(bad)} infeasible (kept, never on the front)"] + bad


def pareto_lines(spec: SweepSpec, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The Pareto set (feasible, non-dominated trials), best first by the first objective."""
    if not spec.multi_objective:
        return []
    front = [r for r in rows if r.get("pareto")]
    front.sort(key=lambda r: r[f"value_{spec.metric}"], reverse=spec.direction == "maximize")
    arrows = ", ".join(f"{o.metric} {'max' if o.direction == 'maximize' else 'min'}" for o in spec.objectives)
    head = f"\nPareto set ({len(front)} trials; {arrows}): trials {', '.join(str(r['number']) for r in front) or 'none yet'}"
    if not front:
        return [head]
    cols = ["number"] + [k for k in front[0] if k.startswith("param_")] + [f"value_{m}" for m in spec.objective_names]
    if spec.constraints:
        cols.append("feasible")
    return [head] + _table([{c.removeprefix("param_").removeprefix("value_"): _fmt(r.get(c)) for c in cols}
                            for r in front])
