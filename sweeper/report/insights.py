"""What the notebook author read off the parallel plot by hand, computed from the trials: for
each parameter, its effect on the objective with a 95% interval, and a plain verdict.

A parameter with a few values compares its best value against each other one: paired over
grid points that differ only in that parameter when there are enough of them (the other
parameters cancel out; a paired t interval over those points, whose count, not the number of
repeats, is the sample size), else as two independent groups (percentile bootstrap; normal
approximation beyond ``BOOTSTRAP_MAX`` values, where the two agree). A parameter with many
values (a range) compares its upper half against its lower half. Fewer than ``MIN_N`` values
on a side is reported as too little evidence, not as an effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

MIN_N = 3  # per group, or pairs, before any verdict
MAX_LEVELS = 8  # more distinct values than this: treat as a range (upper vs lower half)
BOOTSTRAP = 2000
BOOTSTRAP_MAX = 500  # beyond: the normal interval (bootstrapping 2,000 x n costs 20 ms a pair at n = 1,000)
Z95 = 1.959964


@dataclass
class Comparison:
    param: str
    better: str  # label of the group with the better mean (in the objective's direction)
    other: str
    effect: float  # mean(better) - mean(other), objective units (negative for a loss)
    low: float  # 95% interval of the effect
    high: float
    n_better: int
    n_other: int
    n_pairs: int  # 0 when the groups were compared unpaired
    verdict: str  # "clear", "unclear" or "thin"
    text: str


@dataclass
class ParamInsight:
    param: str
    label: str
    importance: float | None
    comparisons: list[Comparison] = field(default_factory=list)
    note: str = ""

    @property
    def headline(self) -> str:
        if self.note:
            return self.note
        clear = [c for c in self.comparisons if c.verdict == "clear"]
        if clear:
            return clear[0].text
        return self.comparisons[0].text if self.comparisons else ""

    @property
    def verdict(self) -> str:
        """The parameter's strongest verdict: clear > unclear > thin."""
        kinds = {c.verdict for c in self.comparisons}
        for kind in ("clear", "unclear", "thin"):
            if kind in kinds:
                return kind
        return "thin"


def short_name(param: str) -> str:
    """``model__batchnorm`` -> ``batchnorm``: the name people say."""
    return param.split("__", 1)[1] if "__" in param else param


def value_label(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _key(v: Any) -> str:
    # repr tells True from 1 and "1" from 1, and is much cheaper than JSON on 10,000 trials.
    return repr(v)


def _t_ci(diffs: np.ndarray) -> tuple[float, float, float]:
    """Mean of paired differences and its 95% t interval (honest for a handful of points,
    where a bootstrap interval comes out too narrow)."""
    # The t quantile from scipy.special: scipy.stats would cost 0.5 s more to import.
    from scipy.special import stdtrit

    n = len(diffs)
    m = float(diffs.mean())
    if n < 2:
        return m, -math.inf, math.inf
    half = float(stdtrit(n - 1, 0.975)) * float(diffs.std(ddof=1)) / math.sqrt(n)
    return m, m - half, m + half


def _diff_ci(a: np.ndarray, b: np.ndarray, rng: np.random.Generator) -> tuple[float, float, float]:
    """mean(a) - mean(b) and its 95% interval, the groups resampled independently."""
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, -math.inf, math.inf
    if max(len(a), len(b)) > BOOTSTRAP_MAX:
        se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
        return d, d - Z95 * se, d + Z95 * se
    ma = a[rng.integers(0, len(a), size=(BOOTSTRAP, len(a)))].mean(axis=1)
    mb = b[rng.integers(0, len(b), size=(BOOTSTRAP, len(b)))].mean(axis=1)
    lo, hi = np.percentile(ma - mb, [2.5, 97.5])
    return d, float(lo), float(hi)


class _Units:
    """Accuracy differences in percentage points; other objectives in their own units. Enough
    decimals that a narrow interval does not read "2.0 to 2.0"."""

    def __init__(self, metric: str) -> None:
        self.scale, self.unit = (100.0, "pts") if metric == "accuracy" else (1.0, metric)
        self.digits = 1 if self.scale == 100.0 else 3

    def fit(self, low: float, high: float) -> "_Units":
        width = (high - low) * self.scale
        base = 1 if self.scale == 100.0 else 3
        if math.isfinite(width) and width > 0:
            self.digits = min(base + 3, max(base, 1 - math.floor(math.log10(width))))
        else:
            self.digits = base
        return self

    def signed(self, v: float) -> str:
        return f"{round(v * self.scale, self.digits) + 0.0:+.{self.digits}f} {self.unit}"

    def plain(self, v: float) -> str:
        return f"{round(v * self.scale, self.digits) + 0.0:.{self.digits}f}"


def _compare(
    param: str, label: str, a_label: str, b_label: str,
    a: np.ndarray, b: np.ndarray, pairs: np.ndarray | None,
    units: _Units, rng: np.random.Generator,
) -> Comparison:
    """``a`` is the better-looking group. Paired when ``pairs`` (a - b per matched point) is given."""
    n_pairs = len(pairs) if pairs is not None else 0
    if pairs is not None:
        effect, lo, hi = _t_ci(pairs)
        basis = f"{len(a)} vs {len(b)} trials, paired over {n_pairs} otherwise-equal points"
    else:
        effect, lo, hi = _diff_ci(a, b, rng)
        basis = f"{len(a)} vs {len(b)} trials"
    units.fit(lo, hi)
    if (pairs is not None and n_pairs < MIN_N) or len(a) < MIN_N or len(b) < MIN_N:
        verdict = "thin"
        text = (f"{label} {a_label} vs {b_label}: too few trials to tell "
                f"({len(a)} vs {len(b)} trials; observed {units.signed(effect)})")
    elif lo > 0 or hi < 0:
        verdict = "clear"
        text = (f"{label} {a_label}: {units.signed(effect)} over {b_label} "
                f"(95% CI {units.plain(lo)} to {units.plain(hi)}, {basis})")
    else:
        verdict = "unclear"
        text = (f"{label} {a_label} vs {b_label}: no clear difference "
                f"({units.signed(effect)}, 95% CI {units.plain(lo)} to {units.plain(hi)}, {basis})")
    return Comparison(param, a_label, b_label, effect, lo, hi, len(a), len(b), n_pairs, verdict, text)


def param_insight(
    param: str,
    trials: Sequence[dict[str, Any]],
    params: Sequence[str],
    metric: str,
    maximize: bool,
    importance: float | None = None,
    seed: int = 0,
) -> ParamInsight:
    """Effects of one parameter from completed ``trials`` (dicts with 'params' and 'value')."""
    rng = np.random.default_rng(seed)
    units = _Units(metric)
    label = short_name(param)
    out = ParamInsight(param, label, importance)
    rows = [t for t in trials if param in t["params"]]
    values = [t["params"][param] for t in rows]
    distinct = {_key(v): v for v in values}
    if len(distinct) < 2:
        only = value_label(next(iter(distinct.values()))) if distinct else "none"
        out.note = f"{label}: one value tried ({only}); nothing to compare"
        return out
    sign = 1.0 if maximize else -1.0
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in distinct.values())
    if len(distinct) > MAX_LEVELS and numeric:
        # A range: upper half vs lower half of the values tried.
        arr = np.array([float(v) for v in values])
        y = np.array([float(t["value"]) for t in rows])
        cut = float(np.median(arr))
        upper, lower = y[arr > cut], y[arr <= cut]
        up_label, low_label = f"above {cut:.3g}", f"at most {cut:.3g}"
        if not len(upper) or not len(lower):
            out.note = f"{label}: values too concentrated to split in halves"
        elif sign * (upper.mean() - lower.mean()) >= 0:
            out.comparisons.append(_compare(param, label, up_label, low_label, upper, lower, None, units, rng))
        else:
            out.comparisons.append(_compare(param, label, low_label, up_label, lower, upper, None, units, rng))
        return out
    # A few values: the best one against each other one.
    groups: dict[str, list[dict[str, Any]]] = {}
    for t in rows:
        groups.setdefault(_key(t["params"][param]), []).append(t)
    means = {k: float(np.mean([t["value"] for t in g])) for k, g in groups.items()}
    best = max(means, key=lambda k: sign * means[k])
    others = sorted((k for k in groups if k != best), key=lambda k: -sign * means[k])
    rest = [p for p in params if p != param]
    for k in others:
        a = np.array([t["value"] for t in groups[best]], dtype=float)
        b = np.array([t["value"] for t in groups[k]], dtype=float)
        out.comparisons.append(_compare(
            param, label, value_label(distinct[best]), value_label(distinct[k]), a, b,
            _pairs(groups[best], groups[k], rest), units, rng,
        ))
    return out


def _pairs(a: list[dict[str, Any]], b: list[dict[str, Any]], rest: Sequence[str]) -> np.ndarray | None:
    """Per point of the other parameters present in both groups: mean(a) - mean(b) there.
    None when fewer than ``MIN_N`` such points exist (then the groups are compared unpaired)."""
    def by_point(group: list[dict[str, Any]]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        for t in group:
            out.setdefault(_key([t["params"].get(p) for p in rest]), []).append(float(t["value"]))
        return out

    pa, pb = by_point(a), by_point(b)
    common = [k for k in pa if k in pb]
    if len(common) < MIN_N:
        return None
    return np.array([np.mean(pa[k]) - np.mean(pb[k]) for k in common])


def insights(
    trials: Sequence[dict[str, Any]],
    params: Sequence[str],
    metric: str,
    maximize: bool,
    order: Sequence[str] = (),
    importance: dict[str, float] | None = None,
) -> list[ParamInsight]:
    """One ``ParamInsight`` per parameter, most important first (``order``; parameters missing
    from it follow, by their largest effect)."""
    done = [t for t in trials if t.get("state", "complete") == "complete" and t.get("duplicate_of") is None
            and isinstance(t.get("value"), (int, float)) and math.isfinite(t["value"])]  # repeats count once
    found = [param_insight(p, done, params, metric, maximize, (importance or {}).get(p)) for p in params]
    rank = {p: i for i, p in enumerate(order)}

    def sort_key(pi: ParamInsight) -> tuple[int, float]:
        biggest = max((abs(c.effect) for c in pi.comparisons), default=0.0)
        return (rank.get(pi.param, len(rank)), -biggest)

    return sorted(found, key=sort_key)
