"""Finding a model's MoE layers, wherever they are nested."""

from keras_moe.layers.moe_layer import MoELayer


def moe_layers(model, layer_class=MoELayer):
    """Every sublayer of `model` (recursively, the model itself excluded) that is a `layer_class`."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True) if isinstance(layer, layer_class)]
