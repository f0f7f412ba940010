"""Import TensorFlow once, without the C++ start-up chatter.

TF 2.21 prints oneDNN/CUDA notices through absl before its logging is initialised, so
TF_CPP_MIN_LOG_LEVEL cannot hide them; they would bury one-line errors and the progress bar.
Set SWEEPER_TF_LOGS=1 to see them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the block (Python's sys.stderr is untouched)."""
    if os.environ.get("SWEEPER_TF_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tensorflow() -> Any:
    """``import tensorflow`` (and list devices, which prints the CUDA notices) quietly."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_native_stderr():
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
    return tf
