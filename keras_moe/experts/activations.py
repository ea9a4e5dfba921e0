"""Expert activations: plain (ReLU, GELU, ...) and gated (SwiGLU, GeGLU) forms."""

import keras
from keras import ops

from keras_moe.utils.validation import check_choice

# Gated variants (Shazeer 2020, "GLU Variants Improve Transformer"): act(x W_gate) * (x W_up).
ACTIVATIONS = ("relu", "gelu", "silu", "swiglu", "geglu", "reglu")
_GATED = {"swiglu": "silu", "geglu": "gelu", "reglu": "relu"}


def check_activation(activation):
    return check_choice("activation", activation, ACTIVATIONS)


def is_gated(activation):
    return activation in _GATED


def apply_activation(hidden, activation):
    """`hidden` is `[..., f]`, or `[..., 2f]` (gate then up halves) for a gated activation."""
    if activation in _GATED:
        gate, up = ops.split(hidden, 2, axis=-1)
        return keras.activations.get(_GATED[activation])(gate) * up
    return keras.activations.get(activation)(hidden)
