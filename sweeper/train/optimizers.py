"""Optimizer names -> Keras optimizer classes, and the optimizers Keras lacks (RAdam: its rectified
step, ``rectified_step``, is written once here for the Keras optimizer and for fused packs)."""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from sweeper.config import names

# Liu et al. 2019 ("On the Variance of the Adaptive Learning Rate and Beyond"), Algorithm 2:
# the adaptive step is used only once rho_t > 4, where the variance rectification term r_t
# is defined (it involves sqrt((rho_t - 4)(rho_t - 2) ...)). The authors' PyTorch code uses
# rho_t > 5 (more conservative); we keep the paper's 4. With beta_2 = 0.999 this means plain
# momentum SGD for steps 1-4 and rectified Adam from step 5 on.
RHO_THRESHOLD = 4.0


@keras.saving.register_keras_serializable(package="sweeper")
class RAdam(keras.optimizers.Optimizer):
    """Rectified Adam: Adam whose adaptive step is scaled by r_t, and skipped while rho_t <= 4.

    m_t = b1 m + (1 - b1) g;  v_t = b2 v + (1 - b2) g^2;  m_hat = m_t / (1 - b1^t)
    rho_inf = 2 / (1 - b2) - 1;  rho_t = rho_inf - 2 t b2^t / (1 - b2^t)
    rho_t > 4: w -= lr * r_t * m_hat / (sqrt(v_hat) + eps), v_hat = v_t / (1 - b2^t),
               r_t = sqrt((rho_t - 4)(rho_t - 2) rho_inf / ((rho_inf - 4)(rho_inf - 2) rho_t))
    otherwise: w -= lr * m_hat
    ``epsilon`` is added outside the square root, as in Keras' Adam.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-7,
        weight_decay: float | None = None,
        clipnorm: float | None = None,
        clipvalue: float | None = None,
        global_clipnorm: float | None = None,
        use_ema: bool = False,
        ema_momentum: float = 0.99,
        ema_overwrite_frequency: int | None = None,
        loss_scale_factor: float | None = None,
        gradient_accumulation_steps: int | None = None,
        name: str = "radam",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            learning_rate=learning_rate,
            name=name,
            weight_decay=weight_decay,
            clipnorm=clipnorm,
            clipvalue=clipvalue,
            global_clipnorm=global_clipnorm,
            use_ema=use_ema,
            ema_momentum=ema_momentum,
            ema_overwrite_frequency=ema_overwrite_frequency,
            loss_scale_factor=loss_scale_factor,
            gradient_accumulation_steps=gradient_accumulation_steps,
            **kwargs,
        )
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon

    def build(self, var_list: list[Any]) -> None:
        """One first-moment and one second-moment slot per trainable variable."""
        if self.built:
            return
        super().build(var_list)
        self._momentums = [self.add_variable_from_reference(v, "momentum") for v in var_list]
        self._velocities = [self.add_variable_from_reference(v, "velocity") for v in var_list]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        """Apply one RAdam step to ``variable``: Adam's moments, then ``rectified_step``."""
        dtype = variable.dtype
        lr = ops.cast(learning_rate, dtype)
        gradient = ops.cast(gradient, dtype)
        beta_1 = ops.cast(self.beta_1, dtype)
        beta_2 = ops.cast(self.beta_2, dtype)
        t = ops.cast(self.iterations + 1, dtype)
        beta_1_power = ops.power(beta_1, t)
        beta_2_power = ops.power(beta_2, t)

        index = self._get_variable_index(variable)
        m = self._momentums[index]
        v = self._velocities[index]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - beta_2))

        self.assign_sub(variable, ops.multiply(lr, rectified_step(ops, m, v, t, beta_1_power, beta_2_power, beta_2,
                                                                  self.epsilon)))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config


def rectified_step(ops: Any, m: Any, v: Any, t: Any, beta_1_power: Any, beta_2_power: Any, beta_2: Any,
                   epsilon: Any) -> Any:
    """RAdam's step before the learning rate, from the updated moments ``m`` and ``v`` at step
    ``t``: the rectified adaptive step once rho_t > 4, else the bias-corrected momentum. Written
    once for sweeper's Keras RAdam (``ops``: keras.ops) and its fused twin on stacked variables
    (fused/optim/radam.py; ``ops``: TensorFlow's). Graph-safe: the branch is a ``where``."""
    m_hat = ops.divide(m, 1 - beta_1_power)
    rho_inf = 2.0 / (1.0 - beta_2) - 1.0
    rho_t = rho_inf - 2.0 * t * beta_2_power / (1.0 - beta_2_power)
    rectified = ops.greater(rho_t, RHO_THRESHOLD)
    # Clamp so the unused branch never takes sqrt of a negative (NaN) for 2 < rho_t < 4.
    r_sq = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf) / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t)
    r_t = ops.sqrt(ops.maximum(r_sq, 0.0))
    v_hat = ops.divide(v, 1 - beta_2_power)
    adaptive = ops.divide(ops.multiply(m_hat, r_t), ops.add(ops.sqrt(v_hat), epsilon))
    return ops.where(rectified, adaptive, m_hat)


def optimizer_class(name: str) -> type:
    """Keras optimizer class by case-insensitive name (RAdam comes from sweeper)."""
    key = name.lower()
    if key not in names.OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}")
    if key == "radam":
        return RAdam
    return getattr(keras.optimizers, names.OPTIMIZERS[key])
