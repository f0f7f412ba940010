"""Each update rule of a fused pack (sweeper/train/fused/optim/) against its Keras twin, on tiny
tensors: K members of mixed optimizers and options in one stacked variable, each kind's rule
writing only its own members' slots (as ``Pack._apply`` applies them), against K Keras optimizers
stepping the same weights with the same gradients: bit for bit for Keras's adam, rmsprop and sgd,
within float rounding for sweeper's RAdam (its constants fold differently in the two graphs)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from sweeper.train.fused import optim
from sweeper.train.fused.ops import per_member
from sweeper.train.runtime import configure_tensorflow, tensorflow

MEMBERS = [
    ("adam", 0.01, {}), ("adam", 0.003, {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-5}),
    ("rmsprop", 0.01, {}), ("rmsprop", 0.002, {"momentum": 0.9, "rho": 0.8}),
    ("sgd", 0.05, {}), ("sgd", 0.02, {"momentum": 0.9}), ("sgd", 0.01, {"momentum": 0.5, "nesterov": 1.0}),
    ("radam", 0.01, {}), ("radam", 0.005, {"beta_2": 0.9}),
]
STEPS = 7  # radam rectifies from step 5 (beta_2 0.999) or earlier (0.9)


def test_update_rules_on_stacked_members_equal_keras_optimizers() -> None:
    import keras

    from sweeper.train.optimizers import optimizer_class

    configure_tensorflow()
    tf = tensorflow()
    k = len(MEMBERS)
    rng = np.random.default_rng(9)
    # Weights about as large as a step, so that a step's last bit shows in them.
    w0 = (rng.normal(size=(k, 4, 3)) * 0.01).astype(np.float32)
    grads = [rng.normal(size=(k, 4, 3)).astype(np.float32) for _ in range(STEPS)]

    wants = []
    for n, (kind, lr, options) in enumerate(MEMBERS):
        var = keras.Variable(w0[n])
        opt = optimizer_class(kind)(learning_rate=lr, **{o: bool(v) if o == "nesterov" else v
                                                          for o, v in options.items()})
        for g in grads:
            opt.apply_gradients([(tf.constant(g[n]), var)])
        wants.append(np.asarray(var))

    members = [SimpleNamespace(optimizer=kind, learning_rate=lr, optimizer_options=options)
               for kind, lr, options in MEMBERS]
    h = {key: tf.constant(v) for key, v in optim.constants(members).items()}
    w, m, v = (tf.Variable(a) for a in (w0, np.zeros_like(w0), np.zeros_like(w0)))
    steps = tf.Variable(np.zeros(k, np.float32))
    kinds = sorted({kind for kind, _, _ in MEMBERS})
    for g in grads:
        t = steps + 1.0
        stacked = {key: per_member(tf, val, k, 3) for key, val in {**h, **optim.powers(tf, h, t)}.items()}
        for kind in kinds:
            on = per_member(tf, tf.equal(h["kind"], float(optim.KINDS.index(kind))), k, 3)
            optim.RULES[kind](tf, w, m, v, tf.constant(g), stacked, per_member(tf, t, k, 3),
                              lambda var, value, on=on: var.assign(tf.where(on, value, var)))
        steps.assign(t)
    got = w.numpy()
    for n, (kind, _, options) in enumerate(MEMBERS):
        if kind == "radam":
            np.testing.assert_allclose(got[n], wants[n], rtol=1e-6, atol=1e-7, err_msg=f"radam {options}")
        else:
            assert np.array_equal(got[n], wants[n]), (
                f"{kind} {options}: the fused rule moved the weights by {np.max(np.abs(got[n] - wants[n]))} "
                "from Keras's optimizer")


def test_every_optimizer_a_member_may_name_has_one_rule() -> None:
    assert set(optim.RULES) == set(optim.OPTIONS) == set(optim.KINDS)
