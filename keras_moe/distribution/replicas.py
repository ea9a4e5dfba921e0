"""Sums over the replicas of a `tf.distribute` step, so that batch statistics describe the global batch.

Under `MirroredStrategy` / `MultiWorkerMirroredStrategy` each replica sees `1/R` of the global batch.
A routing statistic (expert load, mean router probability) or a loss that is nonlinear in such
statistics (load balancing, importance, load) must be computed from *global* sums to equal the
single-device value. `cross_replica_sum` gives those sums; it is differentiable (the gradient of an
all-reduce sum is an all-reduce sum), so a loss built from it has the single-device gradient once
Keras scales it by `1/R` (the TensorFlow trainer does for `add_loss` losses).

On JAX (`keras.distribution`) arrays are global and XLA inserts the collectives itself, and outside a
replica context there is nothing to reduce: there it returns `value` unchanged.
"""

import keras


def replica_context():
    """The active `tf.distribute` replica context with more than one replica, else None."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()  # None in a cross-replica context
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def cross_replica_sum(value):
    """`value` summed over the replicas of the running `strategy.run` step (same shape).

    Example: inside `MirroredStrategy.run` on 2 replicas, `cross_replica_sum(ops.sum(mask))` is the
    number of valid tokens in the global batch; on one device it is `ops.sum(mask)`.
    """
    context = replica_context()
    if context is None:
        return value
    import tensorflow as tf

    return context.all_reduce(tf.distribute.ReduceOp.SUM, value)


def num_replicas_in_sync(strategy):
    """Replicas of a `tf.distribute` strategy; 1 for None (one device, or a JAX distribution)."""
    return int(getattr(strategy, "num_replicas_in_sync", 1) or 1)
