"""Helpers the tests and benchmarks share (as optuna.testing), kept out of the installed package:
synthetic studies, a headless browser driver, image CSVs, what a written report page shows."""
