"""Vocabulary shared by the spec, the estimator and the models: no heavy imports here."""

from __future__ import annotations

# Keras optimizer classes by lower-case name (resolved lazily in estimator.py).
OPTIMIZERS: dict[str, str] = {
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adam": "Adam",
    "adamw": "AdamW",
    "nadam": "Nadam",
    "adadelta": "Adadelta",
    "adagrad": "Adagrad",
    "adamax": "Adamax",
    "ftrl": "Ftrl",
    "lion": "Lion",
    "radam": "RAdam",  # sweeper's own (Keras has none): sweeper/optimizers.py
}

# Optuna sampler classes by sweep method (grid queues its points and consults no sampler).
SAMPLERS: dict[str, str] = {"random": "RandomSampler", "tpe": "TPESampler", "cmaes": "CmaEsSampler", "gp": "GPSampler",
                            "nsga2": "NSGAIISampler"}

ACTIVATIONS = ("relu", "leaky_relu", "prelu", "elu", "selu", "tanh", "sigmoid", "gelu", "swish")
INITIALIZERS = ("glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal")

# Short names people write in sweep files -> scikeras routed names (the estimator's set_params keys).
ALIASES: dict[str, str] = {
    "lr": "optimizer__learning_rate",
    "learning_rate": "optimizer__learning_rate",
    "momentum": "optimizer__momentum",
    "dropout": "model__dropout",
    "batchnorm": "model__batchnorm",
    "batch_norm": "model__batchnorm",
    "activation": "model__activation",
    "units": "model__units",
    "dense_units": "model__units",
    "kernel_initializer": "model__kernel_initializer",
    "init": "model__kernel_initializer",
    "l2": "model__l2",
}

# Estimator-level keys (not routed to the model builder).
ESTIMATOR_KEYS = ("optimizer", "batch_size", "epochs")
OPTIMIZER_KWARGS = (
    "learning_rate", "momentum", "nesterov", "rho", "centered", "beta_1", "beta_2",
    "epsilon", "weight_decay", "amsgrad", "clipnorm", "clipvalue",
)
