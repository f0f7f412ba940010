"""The best trial's page (``sweeper report STUDY --best``): refit its params on its holdout split
(the trial's own seed, so the same initial weights and, on CPU, the same result), then draw the
confusion matrix, misclassified validation images, the first conv layer's feature maps before
and after training (CNNs), and the training curves.

Keras trials only (``trial_function`` unset): a custom trial function trains something else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from sweeper.report import figures, pages
from sweeper.report.collect import StudyData
from sweeper.report.escape import fmt
from sweeper.report.insights import short_name, value_label
from sweeper.spec import SweepSpec


def _first_conv(model: Any) -> Any | None:
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            return layer
    return None


def _maps(model: Any, layer: Any, image: np.ndarray) -> np.ndarray:
    """The layer's output for one image: a sub-model from the input to that layer."""
    import keras

    probe = keras.Model(model.inputs, layer.output)
    return np.asarray(probe.predict(image[None], verbose=0))[0]


def refit(spec: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Train ``params`` (the searched ones) as the sweep's trial did, on its first split;
    returns arrays and facts for the figures."""
    import keras

    from sweeper.data import load_dataset
    from sweeper.estimator import make_estimator
    from sweeper.runner import configure_tensorflow, splits
    from sweeper.space import full_params, trial_seed

    configure_tensorflow()
    ds = load_dataset(spec.data)
    tr, va = splits(spec, ds)[0]
    full = full_params(spec, params)
    seed = trial_seed(spec, full)
    try:
        est = make_estimator(spec, full, seed)  # seed + 0: the runner's seed for split 0
        est.initialize(ds.x[tr], ds.y[tr])
        conv = _first_conv(est.model_)
        sample = ds.x[va][0]
        before = _maps(est.model_, conv, sample) if conv is not None else None
        est.set_params(warm_start=True)  # train the model just built, not a new one
        est.fit(ds.x[tr], ds.y[tr], validation_data=(ds.x[va], ds.y[va]))
        after = _maps(est.model_, conv, sample) if conv is not None else None
        pred = np.asarray(est.predict(ds.x[va])).astype(int).ravel()
        history = {k: [float(v) for v in vals] for k, vals in est.history_.items()}
        n_params = int(est.model_.count_params())
    finally:
        keras.backend.clear_session()
    true = ds.y[va].astype(int)
    k = ds.n_classes
    matrix = np.zeros((k, k), dtype=int)
    np.add.at(matrix, (true, pred), 1)
    return {
        "classes": ds.classes, "x_val": ds.x[va], "true": true, "pred": pred, "matrix": matrix,
        "history": history, "sample": sample, "before": before, "after": after,
        "conv": conv.name if conv is not None else None, "seed": seed, "n_train": len(tr), "n_val": len(va),
        "n_params": n_params, "folds": len(splits(spec, ds)),
    }


def write_best(data: StudyData, spec: SweepSpec, out: Path) -> Path:
    """Write ``out/index.html`` and its PNGs; returns the page's path."""
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    best = data.best()
    if spec.trial_function or best is None:
        why = (f"this study's trials come from trial_function {spec.trial_function}, not the Keras trial: "
               "there is no model to refit") if spec.trial_function else "no completed trial yet"
        page.write_text(pages.best_page(data.name, [("best trial page", "not available")], [], why), encoding="utf-8")
        return page
    r = refit(spec, best["params"])
    classes = r["classes"]
    images: list[tuple[str, str]] = []
    figures.training_plot(r["history"], out / "training.png")
    images.append(("training.png", "training curves of the refit (training and validation)"))
    figures.confusion_plot(r["matrix"], classes, out / "confusion.png")
    images.append(("confusion.png", "confusion matrix on the validation split"))
    wrong = np.flatnonzero(r["pred"] != r["true"])[:25]
    figures.misclassified_plot(r["x_val"][wrong], [classes[i] for i in r["true"][wrong]],
                               [classes[i] for i in r["pred"][wrong]], out / "misclassified.png")
    images.append(("misclassified.png", f"misclassified validation images ({len(wrong)} shown of "
                                        f"{int((r['pred'] != r['true']).sum())})"))
    if r["conv"] is not None:
        figures.feature_maps_plot(r["sample"], r["before"], r["after"], r["conv"], out / "feature_maps.png")
        images.append(("feature_maps.png", f"first conv layer ({r['conv']}) feature maps before and after training"))
    acc = float((r["pred"] == r["true"]).mean())
    facts = [
        ("trial", f"#{best['number']}"),
        ("params", ", ".join(f"{short_name(k)}={value_label(v)}" for k, v in best["params"].items())),
        (f"stored {data.metric}", fmt(best["value"])),
        ("refit validation accuracy", fmt(acc)),
        ("refit on", f"{r['n_train']} training / {r['n_val']} validation images"
                     + (f" (first of {r['folds']} folds)" if r["folds"] > 1 else " (the sweep's holdout split)")),
        ("seed", str(r["seed"])),
        ("model parameters", f"{r['n_params']:,}"),
    ]
    note = "" if r["conv"] else "No conv layer in this model: no feature maps."
    page.write_text(pages.best_page(data.name, facts, images, note), encoding="utf-8")
    return page
