"""`tf.distribute` strategies for `conf/strategy/` (the distribution work adds mirrored, multi-worker, TPU)."""

import contextlib

import keras


def default_strategy():
    """One device: TensorFlow's default strategy, or nothing to enter on other backends."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.distribute.get_strategy()
    return None


def strategy_scope(strategy):
    return strategy.scope() if strategy is not None else contextlib.nullcontext()
