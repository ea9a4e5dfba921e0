"""Row gathers whose backward pass is a gather too.

Axis letters: `m` rows gathered, `r` rows of the source, `j` times a source row is read.

Autodiff turns `take(x, index)` into a scatter-add (TensorFlow's `UnsortedSegmentSum`, single
threaded on CPU: 1.8 ms against 0.3 ms for a gather of 8,192 x 256 floats here). Dispatch always
knows where each source row went, so the gradient can be gathered instead: `dx[r] = sum_j dy[inverse[r, j]]`.
TensorFlow gets that through `tf.custom_gradient`, JAX through `jax.custom_vjp` (XLA's CPU scatter
runs element by element); other backends use plain `take` and autodiff.
"""

import keras
from keras import ops


def take_rows(x, index):
    """`x[index]` along the first axis for indices known to be in range (expert ids).

    `keras.ops.take` also wraps negative indices, which costs TensorFlow four more ops per call
    (a decoding step pays per op); expert ids are never negative.
    """
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.gather(x, index)
    return ops.take(x, index, axis=0)


def gather_rows(x, index, inverse, inverse_valid=None):
    """`x[index]`, with the gradient `dx[r] = sum_j valid[r, j] * dy[inverse[r, j]]`.

    Args:
        x: `[r, h]`.
        index: int `[m]`, rows of `x` to read.
        inverse: int `[r, j]`, for each row of `x` the positions in the output that read it
            (exactly those positions, each once, where `inverse_valid` is True).
        inverse_valid: optional bool `[r, j]`; None means all valid.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return _jax_gather_rows(x, index, inverse, inverse_valid)
    if backend != "tensorflow":
        return ops.take(x, index, axis=0)
    import tensorflow as tf

    @tf.custom_gradient
    def gather(x):
        def grad(dy):
            dy = tf.convert_to_tensor(dy)
            picked = tf.gather(dy, tf.maximum(inverse, 0))  # [r, j, h]
            if inverse_valid is not None:
                picked = picked * tf.cast(inverse_valid, picked.dtype)[:, :, None]
            return tf.reduce_sum(picked, axis=1)

        return tf.gather(x, index), grad

    return gather(x)


def _jax_gather_rows(x, index, inverse, inverse_valid):
    import jax
    import jax.numpy as jnp

    @jax.custom_vjp
    def gather(x, index, inverse, valid):
        return jnp.take(x, index, axis=0)

    def forward(x, index, inverse, valid):
        return gather(x, index, inverse, valid), (index, inverse, valid)

    def backward(saved, dy):
        index, inverse, valid = saved
        picked = jnp.take(dy, jnp.maximum(inverse, 0), axis=0)  # [r, j, h]
        if valid is not None:
            picked = picked * valid[:, :, None].astype(dy.dtype)
        return picked.sum(axis=1), None, None, None

    gather.defvjp(forward, backward)
    return gather(x, index, inverse, inverse_valid)
