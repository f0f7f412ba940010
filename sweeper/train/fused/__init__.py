"""Fused training (HFTA, Wang et al., MLSys 2021): K configurations of one graph structure and
batch size trained as one model with stacked ``(K, ...)`` weights. ``fit.fit_fused`` trains a
pack; ``trials.run_pack`` scores a pack of trials as ``train/trial.py`` scores one; the stacked
model is ``pack.Pack``, its forward ``forward.py`` (written once: batched, or each member on
its own Keras ops), its layers' ops ``ops/`` and its optimizers' update rules ``optim/``, one
module each; the layout is read from the family's template Keras model (``structure.py``).
docs/fused-training.md describes the package."""
