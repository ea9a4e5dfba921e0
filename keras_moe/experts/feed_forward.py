"""A dense position-wise feed-forward block: the shared experts and the dense baseline."""

import keras
from keras import ops

from keras_moe.experts.activations import apply_activation, check_activation, is_gated
from keras_moe.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_moe")
class FeedForward(keras.layers.Layer):
    """`act(x W_in) W_out` (or the gated form), applied to every token.

    Used for DeepSeekMoE's always-on shared experts inside `MoELayer` and as the equal-active
    dense baseline (`intermediate_dim = top_k * expert intermediate_dim`).

    Args:
        intermediate_dim: int `f`.
        activation: one of `"relu"`, `"gelu"`, `"silu"`, `"swiglu"`, `"geglu"`, `"reglu"`.
        use_bias: bool.
        kernel_initializer: initializer of both kernels.

    Example:
    >>> ffn = FeedForward(intermediate_dim=16, activation="swiglu")
    >>> ffn(np.ones((2, 3, 8), "float32")).shape
    TensorShape([2, 3, 8])
    """

    def __init__(self, intermediate_dim, activation="swiglu", use_bias=False, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.activation = check_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        width = self.intermediate_dim * (2 if is_gated(self.activation) else 1)
        self.in_kernel = self.add_weight(name="in_kernel", shape=(hidden_dim, width), initializer=self.kernel_initializer)
        self.out_kernel = self.add_weight(
            name="out_kernel", shape=(self.intermediate_dim, hidden_dim), initializer=self.kernel_initializer
        )
        if self.use_bias:
            self.in_bias = self.add_weight(name="in_bias", shape=(width,), initializer="zeros")
            self.out_bias = self.add_weight(name="out_bias", shape=(hidden_dim,), initializer="zeros")

    def call(self, inputs):
        hidden = ops.matmul(inputs, self.in_kernel)
        if self.use_bias:
            hidden = hidden + self.in_bias
        outputs = ops.matmul(apply_activation(hidden, self.activation), self.out_kernel)
        if self.use_bias:
            outputs = outputs + self.out_bias
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "intermediate_dim": self.intermediate_dim,
                "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
