"""Grouped-query self-attention with rotary positions and a KV cache.

Axis letters: `b` batch, `q` query positions, `k` key positions, `n` query heads, `g` key/value
heads, `d` head dim, `h` hidden.

keras-hub's `CachedMultiHeadAttention` has no grouped-query form and its GQA layers live in private
model folders, so this layer composes the public pieces instead: `keras.layers.EinsumDense`
projections, keras-hub's `RotaryEmbedding`, and `keras.ops.dot_product_attention` (key/value
heads repeated to the query heads first, as keras-hub's Mistral does). The cache layout follows
keras-hub: `[b, 2, max_length, g, d]` (keys, values).
"""

import keras
import keras_hub
from keras import ops

from keras_moe.utils.validation import check_positive_int


@keras.saving.register_keras_serializable(package="keras_moe")
class CachedGroupedQueryAttention(keras.layers.Layer):
    """Causal (or bidirectional) grouped-query attention (Ainslie et al. 2023) with a KV cache.

    Args:
        num_heads: int, query heads `n`.
        num_kv_heads: int, key/value heads `g`; `n` must be a multiple of `g`.
        head_dim: int or None, width of each head (default `hidden_dim // num_heads`; Gemma sets it).
        use_bias: False, True (biases on the query, key, value and output projections: GPT-2) or
            `"qkv"` (query, key and value only: Qwen).
        use_rotary: bool, rotary position embeddings (Su et al. 2021) on queries and keys.
        rope_max_wavelength: int.
        dropout: float, attention-probability dropout.
        kernel_initializer: initializer of the projections.

    Call args:
        hidden: `[b, q, h]`.
        attention_mask: optional bool `[b, q, k]`, True where attention is allowed.
        cache: optional `[b, 2, max_length, g, d]`; cache_update_index: int, first position written.

    Returns:
        `[b, q, h]`, and the updated cache when a cache is given.
    """

    def __init__(
        self,
        num_heads,
        num_kv_heads,
        head_dim=None,
        use_bias=False,
        use_rotary=True,
        rope_max_wavelength=10000,
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.num_kv_heads = check_positive_int("num_kv_heads", num_kv_heads)
        if num_heads % num_kv_heads:
            raise ValueError(
                f"`num_heads` must be a multiple of `num_kv_heads`. Received: num_heads={num_heads}, num_kv_heads={num_kv_heads}"
            )
        self.head_dim = None if head_dim is None else check_positive_int("head_dim", head_dim)
        if use_bias not in (False, True, "qkv"):
            raise ValueError(f"`use_bias` must be False, True or 'qkv'. Received: use_bias={use_bias!r}")
        self.use_bias = use_bias
        self.use_rotary = bool(use_rotary)
        self.rope_max_wavelength = check_positive_int("rope_max_wavelength", rope_max_wavelength)
        self.dropout = float(dropout)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def _head_dim(self, hidden_dim):
        return self.head_dim or hidden_dim // self.num_heads

    def parameter_count(self, hidden_dim):
        """Weights for inputs of width `hidden_dim` (without building): q, o `h n d`; k, v `h g d`; biases."""
        d, n, g = self._head_dim(hidden_dim), self.num_heads, self.num_kv_heads
        count = 2 * hidden_dim * n * d + 2 * hidden_dim * g * d
        if self.use_bias:
            count += n * d + 2 * g * d + (hidden_dim if self.use_bias is True else 0)
        return count

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if self.head_dim is None and hidden_dim % self.num_heads:
            raise ValueError(f"`hidden_dim` ({hidden_dim}) must be a multiple of `num_heads` ({self.num_heads}).")
        head_dim = self._head_dim(hidden_dim)
        self.head_width = head_dim

        def dense(eq, shape, name, bias_axes):
            return keras.layers.EinsumDense(
                eq, output_shape=shape, bias_axes=bias_axes if self.use_bias else None,
                kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy, name=name,
            )

        self.query_dense = dense("bqh,hnd->bqnd", (None, self.num_heads, head_dim), "query", "nd")
        self.key_dense = dense("bkh,hgd->bkgd", (None, self.num_kv_heads, head_dim), "key", "gd")
        self.value_dense = dense("bkh,hgd->bkgd", (None, self.num_kv_heads, head_dim), "value", "gd")
        output_bias = "h" if self.use_bias is True else None
        self.output_dense = keras.layers.EinsumDense(
            "bqnd,ndh->bqh", output_shape=(None, hidden_dim), bias_axes=output_bias,
            kernel_initializer=self.kernel_initializer, dtype=self.dtype_policy, name="attention_output",
        )
        for layer in (self.query_dense, self.key_dense, self.value_dense):
            layer.build(input_shape)
        self.output_dense.build((None, None, self.num_heads, head_dim))
        self.rotary = keras_hub.layers.RotaryEmbedding(max_wavelength=self.rope_max_wavelength, dtype=self.dtype_policy)
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)

    def call(self, hidden, attention_mask=None, cache=None, cache_update_index=None, training=False):
        start = 0 if cache_update_index is None else cache_update_index
        query = self.query_dense(hidden)
        key, value = self.key_dense(hidden), self.value_dense(hidden)
        if self.use_rotary:
            query = self.rotary(query, start_index=start)
            key = self.rotary(key, start_index=start)
        if cache is not None:
            key = ops.slice_update(cache[:, 0], [0, start, 0, 0], key)
            value = ops.slice_update(cache[:, 1], [0, start, 0, 0], value)
            cache = ops.stack([key, value], axis=1)
        if self.num_kv_heads != self.num_heads:
            # keras.ops.dot_product_attention's TensorFlow path needs equal head counts; repeat as keras-hub does.
            key = ops.repeat(key, self.num_heads // self.num_kv_heads, axis=2)
            value = ops.repeat(value, self.num_heads // self.num_kv_heads, axis=2)
        mask = None if attention_mask is None else ops.cast(attention_mask, "bool")[:, None, :, :]
        attended = ops.dot_product_attention(query, key, value, mask=mask)
        if self.dropout > 0:
            attended = self.dropout_layer(attended, training=training)
        output = self.output_dense(attended)
        return output if cache is None else (output, cache)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "num_kv_heads": self.num_kv_heads,
                "head_dim": self.head_dim,
                "use_bias": self.use_bias,
                "use_rotary": self.use_rotary,
                "rope_max_wavelength": self.rope_max_wavelength,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
