"""PNG figures (matplotlib, Agg) from plain rows: per-parameter effects, validation curves,
and the best trial's confusion matrix, misclassified images, feature maps and training curves.

Figures are made with ``matplotlib.figure.Figure`` (no pyplot): no global state, so the report
server may draw from several threads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sweeper.report.insights import short_name, value_label

DPI = 80


def _figure(w: float, h: float, margins: tuple[float, float, float, float] = (0.17, 0.2, 0.97, 0.88)) -> Any:
    """A figure with fixed margins (left, bottom, right, top): constrained layout costs a third
    of the drawing time."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=DPI)
    left, bottom, right, top = margins
    fig.subplots_adjust(left=left, bottom=bottom, right=right, top=top, wspace=0.3, hspace=0.5)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, format="png", dpi=DPI)
    return path


def effect_plot(
    param: str, trials: Sequence[dict[str, Any]], metric: str, log: bool, path: Path, max_points: int = 1000
) -> Path:
    """Objective by the parameter's value: each trial a dot; per value its mean with a 95%
    interval (a few values), or a binned mean (a range)."""
    rows = [t for t in trials if param in t["params"]]
    fig = _figure(4.2, 3.0)
    ax = fig.add_subplot()
    rng = np.random.default_rng(0)
    # Thousands of dots draw slowly and say nothing more: show a fixed random sample.
    shown = rows if len(rows) <= max_points else [rows[i] for i in rng.choice(len(rows), max_points, replace=False)]
    keys = {json.dumps(t["params"][param], default=str): t["params"][param] for t in rows}
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in keys.values())
    if len(keys) > 8 and numeric:
        x = np.array([float(t["params"][param]) for t in shown])
        y = np.array([float(t["value"]) for t in shown])
        ax.scatter(x, y, s=6, alpha=0.35, color="#1f77b4", linewidths=0)
        allx = np.array([float(t["params"][param]) for t in rows])
        ally = np.array([float(t["value"]) for t in rows])
        edges = np.quantile(allx, np.linspace(0, 1, 9))
        mids, means = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            sel = (allx >= lo) & (allx <= hi)
            if sel.any():
                mids.append(float(np.median(allx[sel])))
                means.append(float(ally[sel].mean()))
        ax.plot(mids, means, color="#d62728", lw=2, label="binned mean")
        ax.legend(loc="upper right", fontsize=8)  # "best" searches every dot: a fifth of the figure's time
        if log and allx.min() > 0:
            from matplotlib.ticker import FuncFormatter, NullLocator

            ax.set_xscale("log")
            # Plain "0.001" labels: the default "10^-3" labels start matplotlib's math-text parser
            # (0.3 s on a report's first log axis); no minor ticks (dozens of tick objects, 0.1 s).
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_locator(NullLocator())
    else:
        order = sorted(keys, key=lambda k: _sort_key(keys[k]))
        by_key: dict[str, list[float]] = {}
        for t in rows:
            by_key.setdefault(json.dumps(t["params"][param], default=str), []).append(float(t["value"]))
        shown_by_key: dict[str, list[float]] = {}
        for t in shown:
            shown_by_key.setdefault(json.dumps(t["params"][param], default=str), []).append(float(t["value"]))
        xs, ys, mx, my, half = [], [], [], [], []
        for i, k in enumerate(order):
            shown_ys = shown_by_key.get(k, [])
            xs.extend(i + rng.uniform(-0.18, 0.18, len(shown_ys)))
            ys.extend(shown_ys)
            all_ys = np.array(by_key.get(k, []))
            if len(all_ys):
                mx.append(i)
                my.append(float(all_ys.mean()))
                half.append(1.96 * all_ys.std(ddof=1) / math.sqrt(len(all_ys)) if len(all_ys) > 1 else 0.0)
        # One call each for the dots and the means: a call per value costs a marker set-up each.
        ax.scatter(np.asarray(xs, dtype=float), np.asarray(ys, dtype=float), s=8, alpha=0.4, color="#1f77b4",
                   linewidths=0)
        ax.errorbar(mx, my, yerr=[half, half], fmt="o", color="#d62728", capsize=5, lw=2)
        ax.set_xticks(range(len(order)))
        ax.set_xticklabels([f"{value_label(keys[k])}\n(n={len(by_key.get(k, []))})" for k in order], fontsize=8)
        ax.set_xlim(-0.6, len(order) - 0.4)
    ax.set_xlabel(short_name(param))
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by {short_name(param)}", fontsize=10)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _sort_key(v: Any) -> tuple[int, float, str]:
    if isinstance(v, (int, float)):
        return (0, float(v), "")
    return (1, 0.0, str(v))


def curves_plot(ranked: Sequence[dict[str, Any]], metric: str, path: Path, k: int = 10) -> Path | None:
    """Per-epoch validation curves of the ``k`` best trials (their intermediate values)."""
    from matplotlib.ticker import MaxNLocator

    top = [t for t in ranked if len(t["curve"]) > 1][:k]
    if not top:
        return None
    fig = _figure(6.4, 3.6, (0.12, 0.14, 0.97, 0.9))
    ax = fig.add_subplot()
    for t in top:
        ax.plot(range(1, len(t["curve"]) + 1), t["curve"], marker="o", ms=3, lw=1.2,
                label=f"trial {t['number']} ({t['value']:.4g})")
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no half epochs
    ax.set_ylabel(f"validation {metric}")
    ax.set_title(f"validation curves of the top {len(top)} trials", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncols=2, loc="best")
    return _save(fig, path)


# --------------------------------------------------------------------------- best trial
def confusion_plot(matrix: np.ndarray, classes: Sequence[str], path: Path) -> Path:
    n = len(classes)
    fig = _figure(max(3.5, 0.45 * n + 1.5), max(3.0, 0.45 * n + 1.2), (0.15, 0.15, 0.92, 0.9))
    ax = fig.add_subplot()
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(n), [str(c) for c in classes], fontsize=8)
    ax.set_yticks(range(n), [str(c) for c in classes], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    peak = matrix.max() if matrix.size else 0
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > peak / 2 else "black")
    ax.set_title("confusion matrix (validation)", fontsize=10)
    return _save(fig, path)


def _show_image(ax: Any, img: np.ndarray) -> None:
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def misclassified_plot(images: np.ndarray, true: Sequence[str], pred: Sequence[str], path: Path) -> Path:
    """A gallery titled "true x, predicted y" per image (at most 25)."""
    n = min(len(images), 25)
    cols = min(5, max(n, 1))
    rows = max(1, math.ceil(n / cols))
    fig = _figure(1.7 * cols, 1.8 * rows, (0.02, 0.02, 0.98, 0.9))
    if n == 0:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no misclassified validation images", ha="center", va="center")
        ax.axis("off")
        return _save(fig, path)
    for i in range(n):
        ax = fig.add_subplot(rows, cols, i + 1)
        _show_image(ax, images[i])
        ax.set_title(f"true {true[i]}, predicted {pred[i]}", fontsize=7)
    return _save(fig, path)


def feature_maps_plot(image: np.ndarray, before: np.ndarray | None, after: np.ndarray, layer: str, path: Path) -> Path:
    """The input image and the first conv layer's maps (up to 16 channels) before and after
    training (``before`` None: a kept model, whose initial weights are not at hand: after only)."""
    ch = min(after.shape[-1], 16)
    rows = [(after, "after")] if before is None else [(before, "before"), (after, "after")]
    fig = _figure(1.2 * (ch + 1), 1.4 * len(rows), (0.05, 0.03, 0.98, 0.82 if len(rows) == 2 else 0.7))
    ax = fig.add_subplot(len(rows), ch + 1, 1)
    _show_image(ax, image)
    ax.set_title("input", fontsize=7)
    for row, (maps, label) in enumerate(rows):
        for c in range(ch):
            ax = fig.add_subplot(len(rows), ch + 1, row * (ch + 1) + c + 2)
            ax.imshow(maps[..., c], cmap="viridis")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle(f"first conv layer ({layer}): feature maps " + ("after training" if before is None else
                 "before (top) and after (bottom) training"), fontsize=9)
    return _save(fig, path)


def training_plot(history: dict[str, list[float]], path: Path) -> Path:
    """Loss and accuracy per epoch, training and validation."""
    from matplotlib.ticker import MaxNLocator

    fig = _figure(7.5, 3.0, (0.08, 0.16, 0.98, 0.9))
    for i, key in enumerate(("loss", "accuracy")):
        ax = fig.add_subplot(1, 2, i + 1)
        for name, style in ((key, "-"), (f"val_{key}", "--")):
            if name in history:
                ax.plot(range(1, len(history[name]) + 1), history[name], style, marker="o", ms=3, label=name)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(key, fontsize=10)
        ax.grid(alpha=0.3)
        if ax.get_lines():  # a kept model's page has the stored validation curve of one metric only
            ax.legend(fontsize=8)
    return _save(fig, path)
