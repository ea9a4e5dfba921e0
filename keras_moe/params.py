"""Total and active parameter counts of a built model (each MoE layer knows its own active share)."""

from keras_moe.layers.moe_layer import MoELayer


def count_params(model):
    """Returns `{"total": int, "active": int}` for a built model.

    `total` equals `model.count_params()`. `active` is the number of parameters used to process one
    token: every `MoELayer` counts its own active weights (`MoELayer.parameter_count`: the expert
    bank's `experts_per_token / num_experts` share, the rest fully); everything else counts fully.
    A `MixtureOfModels` runs every expert model, so all of it is active. For an unbuilt backbone,
    the backbone class's `parameter_count(**config)` gives the same numbers without allocating.

    Example:

    ```python
    layer = keras_moe.MoELayer(num_experts=8, intermediate_dim=32)  # top-2 routing
    model = keras.Sequential([keras.Input((4, 16)), layer])
    # 8 experts of 3 x 16 x 32 weights, 2 of 8 active, plus a 16 x 8 router
    assert keras_moe.count_params(model) == {"total": 12416, "active": 3200}
    ```
    """
    total = model.count_params()
    inactive = 0.0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, MoELayer):
            counts = layer.parameter_count(layer.experts.hidden_dim)
            inactive += counts["total"] - counts["active"]
    return {"total": int(total), "active": int(round(total - inactive))}
