"""Training: TensorFlow runtime, data, models, the estimator, the one fit, the trial."""
