"""The loss a pack member trains on: Keras's sparse categorical cross-entropy (from logits;
``sum_over_batch_size``) plus its hidden kernels' L2 penalties (l2 * sum(w ** 2))."""

from __future__ import annotations

from typing import Any


def member(tf: Any, logits: Any, y: Any, kernels: list[Any], l2: Any, has_l2: bool) -> Any:
    """Keras's ``compute_loss`` for one member: cross-entropy summed over its rows and divided by
    their count, plus its kernels' penalties if any pack member has L2. One op per member: over
    all members' rows at once it rounded differently (row offsets)."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int64), logits=logits)
    loss = tf.math.divide_no_nan(tf.reduce_sum(ce), tf.cast(tf.size(ce), tf.float32))
    if has_l2:  # a member without L2 adds zeros: its loss and gradient stay the same
        penalties = (l2 * tf.reduce_sum(tf.square(w)) for w in kernels)
        loss = tf.reduce_sum(tf.stack([loss, *penalties]))
    return loss


def batched(tf: Any, logits: Any, y: Any, mask: Any, penalty: Any) -> tuple[Any, Any]:
    """K members' losses (K,) on (K, B, classes) logits, each over its rows where ``mask`` is 1,
    plus its ``penalty``; and each member's row count."""
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
    n = tf.reduce_sum(mask, 1)
    return tf.reduce_sum(ce * mask, 1) / tf.maximum(n, 1.0) + penalty, n


def penalties(tf: Any, kernels: list[Any], l2: Any, k: int, has_l2: bool) -> Any:
    """Each member's L2 penalty (K,) from stacked (K, ...) hidden kernels."""
    if not has_l2:
        return tf.zeros([k])
    sums = [tf.reduce_sum(tf.square(w), list(range(1, len(w.shape)))) for w in kernels]
    return l2 * tf.add_n(sums)
