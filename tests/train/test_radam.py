"""RAdam against a plain NumPy transcription of Liu et al. 2019 (Algorithm 2, threshold rho_t > 4)."""

from __future__ import annotations

import numpy as np
import pytest

from sweeper.config.spec import DataSpec, SweepSpec
from sweeper.train.estimator import make_estimator
from sweeper.train.optimizers import optimizer_class


def radam_reference(
    w0: np.ndarray, grads: list[np.ndarray], lr: float, beta_1: float, beta_2: float, eps: float
) -> tuple[list[np.ndarray], list[bool]]:
    """Weights after each step, and whether that step was rectified (adaptive)."""
    w, m, v = w0.astype(np.float64), np.zeros_like(w0, np.float64), np.zeros_like(w0, np.float64)
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    out, flags = [], []
    for t, g in enumerate(grads, start=1):
        m = beta_1 * m + (1 - beta_1) * g
        v = beta_2 * v + (1 - beta_2) * g * g
        m_hat = m / (1 - beta_1**t)
        rho_t = rho_inf - 2 * t * beta_2**t / (1 - beta_2**t)
        if rho_t > 4:
            v_hat = v / (1 - beta_2**t)
            r_t = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            w = w - lr * r_t * m_hat / (np.sqrt(v_hat) + eps)
        else:
            w = w - lr * m_hat
        out.append(w.copy())
        flags.append(bool(rho_t > 4))
    return out, flags


def run_radam(w0: np.ndarray, grads: list[np.ndarray], **kwargs: float) -> list[np.ndarray]:
    """Weights after each ``apply_gradients`` of sweeper's RAdam (float64 to compare tightly)."""
    import keras

    opt = optimizer_class("radam")(**kwargs)
    var = keras.Variable(w0, dtype="float64")
    out = []
    for g in grads:
        opt.apply_gradients([(keras.ops.convert_to_tensor(g, dtype="float64"), var)])
        out.append(np.array(var.numpy()))
    return out


def _grads(n: int, shape: tuple[int, ...] = (3, 4), seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) for _ in range(n)]


@pytest.mark.parametrize(
    ("beta_2", "steps"),
    [
        pytest.param(0.999, 4, id="warmup-only"),  # rho_t = 1, 2.0, 3.0, 3.998 (<= 4): momentum steps only
        pytest.param(0.9, 12, id="warmup-then-rectified"),  # rho_t = 1, 1.95, 2.86, 3.74, then 4.58 at t = 5
        pytest.param(0.999, 8, id="default-beta2-crossing"),  # rho_5 = 4.996
    ],
)
def test_matches_numpy_reference(beta_2: float, steps: int) -> None:
    w0 = np.random.default_rng(1).normal(size=(3, 4))
    grads = _grads(steps)
    kwargs = dict(learning_rate=0.01, beta_1=0.9, beta_2=beta_2, epsilon=1e-7)
    expected, rectified = radam_reference(w0, grads, lr=0.01, beta_1=0.9, beta_2=beta_2, eps=1e-7)
    got = run_radam(w0, grads, **kwargs)
    for t, (e, g) in enumerate(zip(expected, got), start=1):
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-9, err_msg=f"step {t}")
    assert rectified[:4] == [False] * 4  # t <= 4 is never rectified (rho_t <= 4)
    if steps > 4:
        assert all(rectified[4:]), "rho_t > 4 from t = 5 on"


def test_warmup_is_plain_bias_corrected_momentum() -> None:
    """While rho_t <= 4 the step ignores v entirely: scaling the gradient scales the step."""
    w0 = np.zeros(5)
    g = [np.full(5, 0.5)]
    small = run_radam(w0, g, learning_rate=0.1)[0]
    big = run_radam(w0, [x * 100 for x in g], learning_rate=0.1)[0]
    np.testing.assert_allclose(small, -0.1 * 0.5)  # m_hat = g at t = 1
    np.testing.assert_allclose(big, 100 * small)


def test_float32_and_config_round_trip() -> None:
    import keras

    cls = optimizer_class("RAdam")
    opt = cls(learning_rate=0.02, beta_1=0.8, beta_2=0.95, epsilon=1e-6)
    config = opt.get_config()
    assert (config["beta_1"], config["beta_2"], config["epsilon"]) == (0.8, 0.95, 1e-6)
    clone = cls.from_config(config)
    assert clone.get_config() == config

    w0 = np.random.default_rng(2).normal(size=(4,)).astype(np.float32)
    grads = _grads(10, shape=(4,), seed=3)
    var = keras.Variable(w0)
    for g in grads:
        clone.apply_gradients([(keras.ops.convert_to_tensor(g.astype(np.float32)), var)])
    expected, _ = radam_reference(w0, grads, lr=0.02, beta_1=0.8, beta_2=0.95, eps=1e-6)
    np.testing.assert_allclose(var.numpy(), expected[-1], rtol=1e-5, atol=1e-6)


def test_end_to_end_through_estimator() -> None:
    """'RAdam' in a sweep resolves to sweeper's class, scikeras routes its kwargs, and it trains."""
    from sweeper.train.optimizers import RAdam

    assert optimizer_class("RAdam") is RAdam and optimizer_class("radam") is RAdam
    rng = np.random.default_rng(0)
    x = rng.random((60, 8, 8, 1), dtype=np.float32)
    y = np.arange(60) % 3
    spec = SweepSpec(name="t", data=DataSpec(dataset="digits"), model="mlp", params={}, fixed={})
    params = {
        "optimizer": "RAdam", "optimizer__learning_rate": 0.01, "optimizer__beta_2": 0.9,
        "epochs": 4, "batch_size": 10, "model__units": 8,
    }
    est = make_estimator(spec, params, seed=0)
    est.fit(x, y)
    assert isinstance(est.model_.optimizer, RAdam)
    assert est.model_.optimizer.beta_2 == 0.9
    assert int(est.model_.optimizer.iterations.numpy()) == 24  # 6 batches x 4 epochs, past warm-up
    losses = est.history_["loss"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
