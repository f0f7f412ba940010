"""The study store (Optuna): storages, studies, trial bookkeeping, results."""
