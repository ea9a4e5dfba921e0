"""One pre-norm transformer block: attention, then a dense FFN or an MoE layer.

Axis letters: `b` batch, `s` sequence, `h` hidden.
"""

import keras
from keras import ops

from keras_moe.experts.feed_forward import FeedForward
from keras_moe.layers.moe_layer import MoELayer
from keras_moe.models.moe_transformer.attention import CachedGroupedQueryAttention
from keras_moe.utils.validation import check_bool, check_choice, check_fraction, check_positive_int

NORMALIZATIONS = ("rms", "rms_plus_one", "layer")


@keras.saving.register_keras_serializable(package="keras_moe")
class PlusOneRMSNormalization(keras.layers.Layer):
    """RMSNorm whose learned scale is an offset from 1: `x / rms(x) * (1 + w)`, `w` initialised to 0,
    computed in float32 (Gemma's normalisation).

    Args:
        epsilon: float added to the mean square.
    """

    def __init__(self, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="zeros")

    def call(self, x):
        x = ops.cast(x, "float32")
        normed = x * ops.rsqrt(ops.mean(ops.square(x), axis=-1, keepdims=True) + self.epsilon)
        return ops.cast(normed * (1.0 + ops.cast(self.scale, "float32")), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["epsilon"] = self.epsilon
        return config


def make_norm(normalization, epsilon, dtype, name):
    check_choice("normalization", normalization, NORMALIZATIONS)
    if normalization == "rms":
        return keras.layers.RMSNormalization(epsilon=epsilon, dtype=dtype, name=name)
    if normalization == "rms_plus_one":
        return PlusOneRMSNormalization(epsilon=epsilon, dtype=dtype, name=name)
    return keras.layers.LayerNormalization(epsilon=epsilon, dtype=dtype, name=name)


def norm_parameter_count(normalization, hidden_dim):
    """RMSNorms have a scale, LayerNorm a scale and a shift."""
    return 2 * hidden_dim if normalization == "layer" else hidden_dim


def attention_mask(padding_mask, query_length, key_length, causal, start_index=0, sliding_window=None):
    """Bool `[b, q, k]`: keys that are not padding and, when causal, not in the future (and, with a
    sliding window `w`, fewer than `w` positions back: Mistral's banded mask)."""
    mask = None
    if padding_mask is not None:
        mask = ops.cast(padding_mask, "bool")[:, None, :]
    if causal:
        query_positions = ops.arange(query_length)[:, None] + start_index
        keys = ops.arange(key_length)[None, :]
        allowed = keys <= query_positions
        if sliding_window is not None:
            allowed = ops.logical_and(allowed, query_positions < keys + sliding_window)
        mask = allowed[None] if mask is None else ops.logical_and(mask, allowed[None])
    return mask


@keras.saving.register_keras_serializable(package="keras_moe")
class MoETransformerBlock(keras.layers.Layer):
    """`x + Attn(Norm(x))`, then `x + FFN(Norm(x))`, where FFN is an `MoELayer` or a `FeedForward`.

    The same block serves decoders (causal, rotary, KV cache) and encoders over mixed image/text
    sequences (bidirectional; `modality_ids` go to a `ModalityMoELayer`).

    Args:
        num_heads, num_kv_heads: attention heads (grouped-query when `num_kv_heads < num_heads`).
        feed_forward: an `MoELayer` (or `ModalityMoELayer`) or `FeedForward` instance (or its
            serialised config).
        causal: bool, causal self-attention (decoder) or bidirectional (encoder).
        normalization: `"rms"` (Keras RMSNormalization, Mixtral) or `"layer"`.
        layer_norm_epsilon: float.
        use_rotary: bool, rotary positions inside attention.
        rope_max_wavelength: int.
        head_dim: int or None, width of each attention head (default `hidden_dim // num_heads`).
        attention_bias: False, True or `"qkv"`: biases of the attention projections (see
            `CachedGroupedQueryAttention`).
        sliding_window: int or None, causal attention only to the last `sliding_window` positions.
        dropout: float, dropout on the attention and FFN outputs.
        kernel_initializer: initializer of the attention projections.

    Call args:
        hidden: `[b, s, h]`. padding_mask: optional `[b, s]`.
        modality_ids: optional int `[b, s]`, passed to a `ModalityMoELayer`.
        cache, cache_update_index: the KV cache (decoding), as in `CachedGroupedQueryAttention`.
        training: bool.
        return_routing: bool; also return the MoE layer's routing object (None for a dense FFN).

    Returns:
        `hidden`, or `(hidden, cache)` with a cache; with `return_routing`, `(that, routing)`.
    """

    def __init__(
        self,
        num_heads,
        num_kv_heads,
        feed_forward,
        causal=True,
        normalization="rms",
        layer_norm_epsilon=1e-5,
        use_rotary=True,
        rope_max_wavelength=10000,
        head_dim=None,
        attention_bias=False,
        sliding_window=None,
        dropout=0.0,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(feed_forward, dict):
            feed_forward = keras.saving.deserialize_keras_object(feed_forward)
        if not isinstance(feed_forward, (MoELayer, FeedForward)):
            raise ValueError(f"`feed_forward` must be an MoELayer or FeedForward. Received: feed_forward={feed_forward!r}")
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.num_kv_heads = check_positive_int("num_kv_heads", num_kv_heads)
        self.feed_forward = feed_forward
        self.causal = check_bool("causal", causal)
        self.normalization = check_choice("normalization", normalization, NORMALIZATIONS)
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.use_rotary = check_bool("use_rotary", use_rotary)
        self.rope_max_wavelength = rope_max_wavelength
        self.dropout = check_fraction("dropout", dropout)
        self.sliding_window = None if sliding_window is None else check_positive_int("sliding_window", sliding_window)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.attention = CachedGroupedQueryAttention(
            num_heads, num_kv_heads, head_dim=head_dim, use_bias=attention_bias, use_rotary=use_rotary,
            rope_max_wavelength=rope_max_wavelength, kernel_initializer=kernel_initializer, dtype=self.dtype_policy,
            name="attention",
        )
        self.attention_norm = make_norm(normalization, layer_norm_epsilon, self.dtype_policy, "attention_norm")
        self.feed_forward_norm = make_norm(normalization, layer_norm_epsilon, self.dtype_policy, "feed_forward_norm")
        self.dropout_layer = keras.layers.Dropout(self.dropout, dtype=self.dtype_policy)
        self.supports_masking = True

    @property
    def is_moe(self):
        return isinstance(self.feed_forward, MoELayer)

    def parameter_count(self, hidden_dim):
        """`{"total", "active"}` weights for inputs of width `hidden_dim`, without building."""
        fixed = self.attention.parameter_count(hidden_dim) + 2 * norm_parameter_count(self.normalization, hidden_dim)
        if self.is_moe:
            ffn = self.feed_forward.parameter_count(hidden_dim)
        else:
            count = self.feed_forward.parameter_count(hidden_dim)
            ffn = {"total": count, "active": count}
        return {"total": fixed + ffn["total"], "active": fixed + ffn["active"]}

    def build(self, input_shape):
        for layer in (self.attention_norm, self.attention, self.feed_forward_norm):
            layer.build(input_shape)
        if not self.feed_forward.built:
            self.feed_forward.build(input_shape)

    def call(
        self, hidden, padding_mask=None, modality_ids=None, cache=None, cache_update_index=None, training=False,
        return_routing=False,
    ):
        seq_len = ops.shape(hidden)[1]
        key_len = seq_len if cache is None else ops.shape(cache)[2]
        key_mask = padding_mask if cache is None else None
        start = 0 if cache_update_index is None else cache_update_index
        mask = attention_mask(key_mask, seq_len, key_len, self.causal, start, self.sliding_window)
        attended = self.attention(
            self.attention_norm(hidden), attention_mask=mask, cache=cache, cache_update_index=cache_update_index, training=training
        )
        if cache is not None:
            attended, cache = attended
        hidden = hidden + self.dropout_layer(attended, training=training)
        normed = self.feed_forward_norm(hidden)
        routing = None
        if self.is_moe:
            context = {} if modality_ids is None else {"modality_ids": modality_ids}
            mask = padding_mask if cache is None else None
            ffn = self.feed_forward(normed, mask=mask, training=training, return_routing=return_routing, **context)
            if return_routing:
                ffn, routing = ffn
        else:
            ffn = self.feed_forward(normed)
        hidden = hidden + self.dropout_layer(ffn, training=training)
        outputs = hidden if cache is None else (hidden, cache)
        return (outputs, routing) if return_routing else outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "num_kv_heads": self.num_kv_heads,
                "feed_forward": keras.saving.serialize_keras_object(self.feed_forward),
                "causal": self.causal,
                "normalization": self.normalization,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "use_rotary": self.use_rotary,
                "rope_max_wavelength": self.rope_max_wavelength,
                "head_dim": self.attention.head_dim,
                "attention_bias": self.attention.use_bias,
                "sliding_window": self.sliding_window,
                "dropout": self.dropout,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config
