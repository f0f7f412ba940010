"""Helpers the tests and benchmarks share (as optuna.testing): synthetic studies, a headless
browser driver, image CSVs, what a written report page shows."""
