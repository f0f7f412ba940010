"""The model zoo: one builder per family (the registry of names is config/models.py)."""
