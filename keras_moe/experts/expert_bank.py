"""Experts with weights stacked along an expert axis.

Axis letters: `e` experts, `c` capacity (tokens per expert), `t` tokens, `n` rows sorted by
expert, `h` hidden, `f` expert FFN (`2f` for gated activations).
"""

import keras
from keras import ops

from keras_moe.dispatch.grouped_matmul import grouped_matmul, split_apply, supports_split_apply
from keras_moe.experts.activations import apply_activation, check_activation, is_gated
from keras_moe.utils.validation import check_positive_int


# Whole-expert-per-group (`split_apply`) beats two grouped matmuls up to about 32 experts on
# TensorFlow/CPU (4,096 tokens, h 256, f 512, top-2, fwd+bwd: 55 vs 61 ms at 8 experts, 56 vs 63 at 16,
# 68 vs 70 at 32, 77 vs 75 at 64); past that its per-expert activation ops cost more than the copies it saves.
SPLIT_APPLY_MAX_EXPERTS = 32


@keras.saving.register_keras_serializable(package="keras_moe")
class ExpertBank(keras.layers.Layer):
    """`num_experts` feed-forward experts computed together with batched einsums.

    Weights: `in_kernel [e, h, f]` (`[e, h, 2f]` for gated activations, gate half first, as in
    keras-hub's Mixtral), `out_kernel [e, f, h]`, optional biases. Fine-grained experts
    (DeepSeekMoE) are many experts with a small `intermediate_dim`.

    Three entry points, same maths:
    - `call(x)`: `x [e, c, h] -> [e, c, h]`, each expert on its own buffer (capacity dispatch).
    - `call_grouped(x, group_sizes)`: `x [n, h]` rows sorted by expert -> `[n, h]` (dropless).
    - `call_all(x)`: `x [t, h] -> [t, e, h]`, every expert on every token (the test oracle).

    Args:
        num_experts: int `e`.
        intermediate_dim: int `f`, FFN width of each expert.
        activation: `"relu"`, `"gelu"`, `"silu"` (MLP experts) or `"swiglu"`, `"geglu"`,
            `"reglu"` (gated experts, Mixtral uses `"swiglu"`).
        use_bias: bool.
        kernel_initializer: initializer of both kernels.

    Example:
    >>> bank = ExpertBank(num_experts=4, intermediate_dim=16)
    >>> bank(np.ones((4, 3, 8), "float32")).shape
    TensorShape([4, 3, 8])
    """

    def __init__(
        self,
        num_experts,
        intermediate_dim,
        activation="swiglu",
        use_bias=False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = check_positive_int("num_experts", num_experts)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.activation = check_activation(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim is None:
            raise ValueError(f"The last axis of the expert input must be known. Received shape {input_shape}")
        self.hidden_dim = hidden_dim
        width = self.intermediate_dim * (2 if is_gated(self.activation) else 1)
        e = self.num_experts
        self.in_kernel = self.add_weight(name="in_kernel", shape=(e, hidden_dim, width), initializer=self.kernel_initializer)
        self.out_kernel = self.add_weight(
            name="out_kernel", shape=(e, self.intermediate_dim, hidden_dim), initializer=self.kernel_initializer
        )
        if self.use_bias:
            self.in_bias = self.add_weight(name="in_bias", shape=(e, width), initializer="zeros")
            self.out_bias = self.add_weight(name="out_bias", shape=(e, hidden_dim), initializer="zeros")

    def call(self, inputs):
        hidden = ops.einsum("ech,ehf->ecf", inputs, self.in_kernel)
        if self.use_bias:
            hidden = hidden + self.in_bias[:, None, :]
        outputs = ops.einsum("ecf,efh->ech", apply_activation(hidden, self.activation), self.out_kernel)
        if self.use_bias:
            outputs = outputs + self.out_bias[:, None, :]
        return outputs

    def call_grouped(self, inputs, group_sizes):
        """`inputs [n, h]` sorted by expert with `group_sizes [e]` rows each; rows past the groups give zeros."""
        if supports_split_apply() and self.num_experts <= SPLIT_APPLY_MAX_EXPERTS:
            return split_apply(inputs, group_sizes, self._expert_fn())
        hidden = grouped_matmul(inputs, self.in_kernel, group_sizes)
        if self.use_bias:
            hidden = hidden + _repeat_rows(self.in_bias, group_sizes, ops.shape(inputs)[0])
        outputs = grouped_matmul(apply_activation(hidden, self.activation), self.out_kernel, group_sizes)
        if self.use_bias:
            outputs = outputs + _repeat_rows(self.out_bias, group_sizes, ops.shape(inputs)[0])
        return outputs

    def _expert_fn(self):
        """`fn(i, rows)`: expert `i` on its rows. Weights are unstacked once (one gradient op, not e slices)."""
        in_kernels = ops.unstack(self.in_kernel, axis=0)
        out_kernels = ops.unstack(self.out_kernel, axis=0)
        in_biases = ops.unstack(self.in_bias, axis=0) if self.use_bias else None
        out_biases = ops.unstack(self.out_bias, axis=0) if self.use_bias else None

        def fn(i, rows):
            hidden = ops.matmul(rows, in_kernels[i])
            if in_biases is not None:
                hidden = hidden + in_biases[i]
            outputs = ops.matmul(apply_activation(hidden, self.activation), out_kernels[i])
            return outputs if out_biases is None else outputs + out_biases[i]

        return fn

    def call_all(self, inputs):
        """Every expert on every token: `[t, h] -> [t, e, h]`. Slow; the oracle for tests."""
        hidden = ops.einsum("th,ehf->tef", inputs, self.in_kernel)
        if self.use_bias:
            hidden = hidden + self.in_bias[None]
        outputs = ops.einsum("tef,efh->teh", apply_activation(hidden, self.activation), self.out_kernel)
        if self.use_bias:
            outputs = outputs + self.out_bias[None]
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_experts": self.num_experts,
                "intermediate_dim": self.intermediate_dim,
                "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config


def _repeat_rows(per_expert, group_sizes, num_rows):
    """`[e, d]` -> `[n, d]`: each expert's row repeated for its group; zeros past the groups."""
    expert_of_row = ops.searchsorted(ops.cumsum(group_sizes), ops.arange(num_rows, dtype=group_sizes.dtype), side="right")
    padded = ops.concatenate([per_expert, ops.zeros_like(per_expert[:1])], axis=0)
    return ops.take(padded, ops.minimum(expert_of_row, ops.shape(per_expert)[0]), axis=0)
