"""Which transformer blocks are MoE, and their feed-forward layers: shared by every backbone.

A backbone takes the same MoE arguments (`MOE_DEFAULTS`), keeps them as attributes and in its
config (`MoEStackMixin`), and asks `make_feed_forward` for each block's FFN: an `MoELayer` (or a
subclass, such as `ModalityMoELayer`) or a dense `FeedForward`.
"""

import keras

from keras_moe import routing
from keras_moe.experts.feed_forward import FeedForward
from keras_moe.layers.moe_layer import MoELayer
from keras_moe.models.lora import ExpertLoRABackboneMixin
from keras_moe.utils.validation import check_positive_int

# The MoE arguments of every backbone, with their defaults (see `MoELayer` for their meaning).
MOE_DEFAULTS = {
    "num_experts": 8,
    "router": "top_k",
    "activation": "swiglu",
    "num_shared_experts": 0,
    "dispatch": "capacity",
    "train_capacity_factor": 1.25,
    "eval_capacity_factor": 2.0,
    "min_expert_capacity": 4,
    "num_dense_layers": 0,
    "moe_layer_interval": 1,
    "use_bias": False,
}
_LAYER_ARGUMENTS = ("activation", "num_shared_experts", "dispatch", "train_capacity_factor", "eval_capacity_factor",
                    "min_expert_capacity", "use_bias")


def is_moe_block(index, num_experts, num_dense_layers, moe_layer_interval):
    """Block `index` is an MoE block: after the first `num_dense_layers`, every `moe_layer_interval`-th."""
    return num_experts > 0 and index >= num_dense_layers and (index - num_dense_layers) % moe_layer_interval == 0


def check_moe_arguments(arguments):
    """Validates the stack arguments (the layers validate the rest); returns them with defaults filled."""
    arguments = {**MOE_DEFAULTS, **arguments}
    check_positive_int("num_experts", arguments["num_experts"], allow_zero=True)
    check_positive_int("num_dense_layers", arguments["num_dense_layers"], allow_zero=True)
    check_positive_int("moe_layer_interval", arguments["moe_layer_interval"])
    return arguments


def make_feed_forward(index, intermediate_dim, moe, dense_intermediate_dim=None, kernel_initializer="glorot_uniform",
                      dtype=None, moe_class=MoELayer, **moe_layer_kwargs):
    """Block `index`'s FFN: `moe_class(...)` named `moe_{index}`, or `FeedForward` named `ffn_{index}`.

    Args:
        index: int, the block's position.
        intermediate_dim: int, FFN width of each expert.
        moe: dict of the `MOE_DEFAULTS` arguments.
        dense_intermediate_dim: int or None, width of dense blocks (default `intermediate_dim`).
        kernel_initializer, dtype: for the layer.
        moe_class: the MoE layer class; `moe_layer_kwargs` are further arguments for it.
    """
    if is_moe_block(index, moe["num_experts"], moe["num_dense_layers"], moe["moe_layer_interval"]):
        # `routing.get` builds a fresh router per block, so blocks never share router weights.
        return moe_class(
            moe["num_experts"], intermediate_dim, router=routing.get(moe["router"], num_experts=moe["num_experts"]),
            kernel_initializer=kernel_initializer, dtype=dtype, name=f"moe_{index}",
            **{key: moe[key] for key in _LAYER_ARGUMENTS}, **moe_layer_kwargs,
        )
    return FeedForward(dense_intermediate_dim or intermediate_dim, activation=moe["activation"], use_bias=moe["use_bias"],
                       kernel_initializer=kernel_initializer, dtype=dtype, name=f"ffn_{index}")


class MoEStackMixin(ExpertLoRABackboneMixin):
    """For backbones: the MoE arguments as attributes and config entries, the MoE layers, and LoRA
    on the expert banks (`backbone.enable_lora(rank)` gives each expert its own adapters)."""

    def _set_moe_arguments(self, arguments):
        for key in MOE_DEFAULTS:
            setattr(self, key, arguments[key])

    def moe_config(self):
        """The MoE arguments for `get_config` (a `Router` instance serialised)."""
        config = {key: getattr(self, key) for key in MOE_DEFAULTS}
        if isinstance(config["router"], routing.Router):
            config["router"] = keras.saving.serialize_keras_object(config["router"])
        return config

    @property
    def moe_layers(self):
        return [block.feed_forward for block in self.transformer_layers if block.is_moe]
