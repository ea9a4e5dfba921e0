"""A dense position-wise feed-forward block: the shared experts and the dense baseline."""

import keras
from keras import ops

from keras_moe.experts import activations
from keras_moe.experts.expert_math import split_gate_up
from keras_moe.utils.validation import check_bool, check_positive_int


@keras.saving.register_keras_serializable(package="keras_moe")
class FeedForward(keras.layers.Layer):
    """`act(x W_in) W_out` (or the gated form, gate half of `W_in` first), applied to every token.

    Used for DeepSeekMoE's always-on shared experts inside `MoELayer` and as the equal-active
    dense baseline (`intermediate_dim = top_k * expert intermediate_dim`).

    Args:
        intermediate_dim: int `f`.
        activation: an expert activation (see `keras_moe.experts.activations`).
        use_bias: bool.
        kernel_initializer: initializer of both kernels.

    Example:

    ```python
    ffn = keras_moe.experts.FeedForward(intermediate_dim=16, activation="swiglu")
    assert tuple(ffn(np.ones((2, 3, 8), "float32")).shape) == (2, 3, 8)
    ```
    """

    def __init__(self, intermediate_dim, activation="swiglu", use_bias=False, kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.expert_activation = activations.get(activation)
        self.activation = self.expert_activation.config
        self.use_bias = check_bool("use_bias", use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.supports_masking = True

    @property
    def _in_width(self):
        return self.intermediate_dim * (2 if self.expert_activation.gated else 1)

    def parameter_count(self, hidden_dim):
        """Weights created for inputs of width `hidden_dim` (without building)."""
        biases = (self._in_width + hidden_dim) if self.use_bias else 0
        return hidden_dim * self._in_width + self.intermediate_dim * hidden_dim + biases

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        self.in_kernel = self.add_weight(name="in_kernel", shape=(hidden_dim, self._in_width), initializer=self.kernel_initializer)
        self.out_kernel = self.add_weight(
            name="out_kernel", shape=(self.intermediate_dim, hidden_dim), initializer=self.kernel_initializer
        )
        if self.use_bias:
            self.in_bias = self.add_weight(name="in_bias", shape=(self._in_width,), initializer="zeros")
            self.out_bias = self.add_weight(name="out_bias", shape=(hidden_dim,), initializer="zeros")

    def call(self, inputs):
        hidden = ops.matmul(inputs, self.in_kernel)
        if self.use_bias:
            hidden = hidden + self.in_bias
        act = self.expert_activation
        hidden = act(*split_gate_up(hidden, "fused")) if act.gated else act(hidden)
        outputs = ops.matmul(hidden, self.out_kernel)
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
