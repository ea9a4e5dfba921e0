"""Total and active parameter counts of any model built from keras-moe layers."""

from keras_moe.experts.model_mixture import MixtureOfModels
from keras_moe.layers.moe_layer import MoELayer


def count_params(model):
    """Returns `{"total": int, "active": int}`.

    `total` equals `model.count_params()`. `active` is the number of parameters used to process one
    token: in every `MoELayer`, the expert bank counts `experts_per_token / num_experts` of its
    weights (`top_k` for token choice, the capacity factor for expert choice, all for Soft MoE and
    dense gates); routers, shared experts and everything else count fully. A `MixtureOfModels`
    runs every expert model, so all of it is active.

    Example:
    >>> layer = MoELayer(num_experts=8, intermediate_dim=32, top_k=2)
    >>> model = keras.Sequential([keras.Input((4, 16)), layer])
    >>> count_params(model)  # 8 experts x 3 x 16 x 32 weights, 2 of 8 active, + a 16 x 8 router
    {'total': 12416, 'active': 3200}
    """
    total = model.count_params()
    inactive = 0.0
    for layer in model._flatten_layers(include_self=True, recursive=True):
        if isinstance(layer, MoELayer):
            share = min(1.0, layer.experts_per_token / layer.num_experts)
            inactive += layer.experts.count_params() * (1.0 - share)
    return {"total": int(total), "active": int(round(total - inactive))}
