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
    inputs = keras.Input((4, 8))
    model = keras.Model(inputs, keras_moe.MoELayer(4, 16, name="moe")(inputs))
    with keras_moe.layers.routing_statistics(model, enabled=False):
        model.predict(np.ones((2, 4, 8), "float32"), verbose=0)  # e.g. trace a serving function here
    assert model.get_layer("moe").record_stats  # restored
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
