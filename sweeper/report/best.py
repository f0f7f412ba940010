"""The best trial's page (``sweeper report STUDY --best``): drawn from the best trial's kept model
of its first split when it has one (``artifacts: {keep: K}``: loaded, nothing trained,
deliver.kept_on_split), else from a refit on its own split (deliver.refit_on_split, the one fit
with the trial's seed); the page says which. The stored score and the model's score side by side,
the confusion matrix, misclassified validation images, the first conv layer's feature maps
(before and after training for a refit, after for a kept model; CNNs), and the training curves
(the refit's, or the validation curve the trial stored).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sweeper.config.spec import SweepSpec
from sweeper.report import figures, pages
from sweeper.report.collect import StudyData
from sweeper.report.escape import fmt
from sweeper.report.insights import short_name, value_label


def write_best(data: StudyData, spec: SweepSpec, r: Any, out: Path) -> Path:
    """Write ``out/index.html`` and its PNGs from ``r`` (a deliver.SplitRefit, or None when there
    is nothing to refit); returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    if r is None:
        why = (f"this study's trials come from trial_function {spec.trial_function}, not the Keras trial: "
               "there is no model to refit") if spec.trial_function else "no completed trial yet"
        page.write_text(pages.best_page(data.name, [("best trial page", "not available")], [], why), encoding="utf-8")
        return page
    classes = r.classes
    kept = r.source == "kept model"
    images: list[tuple[str, str]] = []
    figures.training_plot(r.history, out / "training.png")
    images.append(("training.png", f"validation {data.metric} per epoch as the trial stored it (mean over its fits)"
                   if kept else "training curves of the refit (training and validation)"))
    figures.confusion_plot(r.matrix, classes, out / "confusion.png")
    images.append(("confusion.png", "confusion matrix on the validation split"))
    wrong = np.flatnonzero(r.pred != r.true)[:25]
    figures.misclassified_plot(r.x_val[wrong], [classes[i] for i in r.true[wrong]],
                               [classes[i] for i in r.pred[wrong]], out / "misclassified.png")
    images.append(("misclassified.png", f"misclassified validation images ({len(wrong)} shown of "
                                        f"{int((r.pred != r.true).sum())})"))
    if r.conv is not None:
        figures.feature_maps_plot(r.sample, r.before, r.after, r.conv, out / "feature_maps.png")
        images.append(("feature_maps.png", f"first conv layer ({r.conv}) feature maps "
                       + ("of the kept model" if kept else "before and after training")))
    split = f"first of {r.folds} folds" if r.folds > 1 else "the sweep's holdout split"
    facts = [
        ("trial", f"#{r.trial_number}"),
        ("model", "kept model: the trial's own trained model, loaded from the study's artifact store; nothing "
                  "trained" if kept else "refit: trained again here on the trial's split with its seed (no kept "
                                         "model of this trial to load)"),
        ("params", ", ".join(f"{short_name(k)}={value_label(v)}" for k, v in r.params.items())),
        (f"stored {data.metric} ({split})", fmt(r.stored_score)),
        (f"{r.source} {data.metric} ({split})", fmt(r.score)),
        ("trained on" if kept else "refit on", f"{r.n_train} training / {r.n_val} validation images, the "
                                               f"trial's own seed{', while the sweep ran' if kept else ''}"),
        ("seed", str(r.seed)),
        ("model parameters", f"{r.n_params:,}"),
    ]
    note = "" if r.conv else "No conv layer in this model: no feature maps."
    page.write_text(pages.best_page(data.name, facts, images, note), encoding="utf-8")
    return page
