"""Whether the code being traced will be compiled by XLA with static shapes only.

TensorFlow's dropless dispatch splits rows into per-expert groups of data-dependent sizes; XLA
cannot compile that (`jit_compile=True`, which keras-hub's `generate` uses on GPUs). JAX's path
(`ragged_dot`) compiles, so only TensorFlow asks. TensorFlow marks the graph of a function traced
for XLA with an `XLAControlFlowContext`; `tf.function` itself enters it while tracing with
`jit_compile=True` (`control_flow_util.GraphOrParentsInXlaContext`, TensorFlow's own check).
"""

import keras


def in_xla_compilation():
    """True while TensorFlow traces a function it will compile with XLA."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_util

    if tf.executing_eagerly():
        return False
    return bool(control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph()))
