"""Experiment trackers (TensorBoard's HParams dashboard, MLflow): one record per trial
(records.py), the runs written from it (tb_runs.py, mlflow_runs.py), and the live sinks a worker
writes each trial to once it is told (live.py). Below the worker and the reports, above the store."""
