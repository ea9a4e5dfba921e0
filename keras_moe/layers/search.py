"""Finding a model's MoE layers, and turning their routing statistics off for a block of code."""

import contextlib

from keras_moe.layers.moe_layer import MoELayer


def moe_layers(model, layer_class=MoELayer):
    """Every sublayer of `model` (recursively, the model itself excluded) that is a `layer_class`."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True) if isinstance(layer, layer_class)]


@contextlib.contextmanager
def routing_statistics(model, enabled):
    """Sets `record_stats` of every MoE layer of `model` to `enabled` inside the block, then restores it.

    A served graph must not write metric variables, and generation has no use for statistics:

    ```python
    with keras_moe.layers.routing_statistics(model, enabled=False):
        serving_fn = tf.function(model.call).get_concrete_function(spec)
    ```
    """
    layers = moe_layers(model)
    previous = [layer.record_stats for layer in layers]
    try:
        for layer in layers:
            layer.record_stats = bool(enabled)
        yield
    finally:
        for layer, value in zip(layers, previous):
            layer.record_stats = value
