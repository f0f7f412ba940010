"""TensorFlow runtime set-up: import it once and quietly, configure a worker process once, seed
fits, and every use of TensorFlow's private API (tensorflow is pinned below 2.22 in pyproject.toml).

Import TensorFlow once, without the C++ start-up chatter.

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


_configured = False


def configure_tensorflow(deterministic: bool = True) -> None:
    """Once per worker process: quiet import, GPU memory growth or cap, threads, op determinism
    and no arithmetic graph rewrites on CPU (on GPUs determinism costs speed; the seeds still fix
    initial weights)."""
    global _configured
    if _configured:
        return
    from sweeper.train.devices import configure_worker_devices

    tf = tensorflow()
    # A sweep traces a step per model structure (and per pack shape) on purpose; TensorFlow's
    # advice to stop "creating @tf.function repeatedly" would land in the middle of the progress bar.
    tf.get_logger().addFilter(lambda record: "triggered tf.function retracing" not in record.getMessage())
    purge_gradient_registry()  # first call: remember TensorFlow's own registry entries
    configure_worker_devices(tf)
    if deterministic and not tf.config.list_physical_devices("GPU"):
        tf.config.experimental.enable_op_determinism()
        # Grappler's arithmetic rewrites (x / sqrt(y) -> x * rsqrt(y), add chains -> AddN, ...)
        # depend on the graph around an expression, so a fused pack's member and the same trial
        # fitted alone rounded differently (1e-8 per step, enough to move chaotic fits by points).
        # Without them both compute the same bits (tests/train/test_fused.py), at no measured cost.
        tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
    _configured = True


def set_op_determinism(on: bool) -> None:
    """Op determinism for the next fit, on CPU only. Keras turns XLA off while it is on, so a sweep
    that asks for ``jit_compile`` trades it for XLA (private TF API: a no-op if it moved)."""
    tf = tensorflow()
    if tf.config.list_physical_devices("GPU"):
        return
    try:
        from tensorflow.python.framework import config
    except ImportError:
        return
    if on and not config.is_op_determinism_enabled():
        config.enable_op_determinism()
    elif not on and config.is_op_determinism_enabled():
        config.disable_op_determinism()


# tf.function(experimental_attributes=NOT_INLINED): a nested traced function TensorFlow calls
# rather than inlines into its caller (the attribute's name is TensorFlow's, not public API).
NOT_INLINED = {"_noinline": True}


def set_random_seed_keeping_kernels(seed: int) -> None:
    """``keras.utils.set_random_seed(seed)`` without the flush of TensorFlow's eager kernel cache
    that ``tf.random.set_seed`` adds. That flush drops every traced function's instantiated graph,
    so the next call of a fused pack's step optimized the whole graph again (1.5 s for 16 MLP
    members, per pack) and a reused model's trial compiled its step again (a third of a 3-epoch
    notebook-MLP trial). It is there to restart stateful random kernels; the fits seeded here
    reach only stateless ops, Keras's initializers and tf.data shuffles, which read the global seed
    when they are made, so flushing or not gives the same numbers (``flush_now_and_then`` bounds
    the cache). Private TF API: where it moved, the plain Keras call (with its flush)."""
    import random

    import keras

    try:
        from tensorflow.python.eager import context

        ctx = context.context()
        ctx._set_global_seed  # noqa: B018  (present: the attributes below are too)
    except (ImportError, AttributeError):
        keras.utils.set_random_seed(seed)
        return

    def seed_only(value: int) -> None:  # _set_global_seed less its cache flush
        ctx._seed, ctx._rng = value, random.Random(value)

    ctx._set_global_seed = seed_only  # an instance attribute over the method, for this call only
    try:
        keras.utils.set_random_seed(seed)
    finally:
        del ctx._set_global_seed


# Fits (or packs) between two flushes of TensorFlow's kernel cache (see flush_now_and_then).
FLUSH_EVERY = 64
_unflushed = 0


def flush_now_and_then() -> None:
    """Called once per fit or pack seeded with ``set_random_seed_keeping_kernels``: every
    ``FLUSH_EVERY``-th call flushes TensorFlow's kernel cache (``tf.random.set_seed`` does; the
    caller seeds next). The cache keeps a kernel for each new variable, about 0.15 MB per tiny
    trial (benchmarks/drift.py), so it is flushed now and then, at the price of compiling the
    reused steps once more."""
    global _unflushed
    _unflushed += 1
    if _unflushed >= FLUSH_EVERY:
        _unflushed = 0
        tensorflow().random.set_seed(0)


def gradient_registry_keys() -> set[str]:
    """Names in TensorFlow's gradient registry (see purge_gradient_registry)."""
    try:
        from tensorflow.python.framework import ops

        return set(ops._gradient_registry._registry)
    except (ImportError, AttributeError):
        return set()


_baseline_keys: set[str] | None = None


def purge_gradient_registry() -> int:
    """Drop the ``CustomGradient-N`` entries that traced train steps leave in TensorFlow's
    gradient registry. Each holds its whole graph alive after ``clear_session`` (~8 MB per traced
    model; tensorflow#97697), so a long sweep's memory and gc time grow with every new model.
    Only entries added since sweeper's first call are dropped, and only while no cached model
    needs them. Private TF API: a missing registry is a no-op."""
    global _baseline_keys
    try:
        from tensorflow.python.framework import ops

        registry = ops._gradient_registry._registry
    except (ImportError, AttributeError):
        return 0
    if _baseline_keys is None:
        _baseline_keys = set(registry)
        return 0
    stale = [k for k in registry if k.startswith("CustomGradient-") and k not in _baseline_keys]
    for k in stale:
        del registry[k]
    return len(stale)


def release_keras_state() -> None:
    """Free the graphs and weights of finished fits: a long sweep must not grow (keras#11478,
    tensorflow#97697). clear_session already runs the garbage collector."""
    import keras

    keras.backend.clear_session()
    purge_gradient_registry()
