"""A transformer backbone whose feed-forward blocks are (partly) Mixture-of-Experts layers.

Axis letters: `b` batch, `s` sequence, `h` hidden, `v` vocabulary.
"""

import keras
import keras_hub
from keras import ops

from keras_moe.models.feed_forward_stack import (
    MOE_DEFAULTS,
    MoEStackMixin,
    check_moe_arguments,
    make_feed_forward,
)
from keras_moe.models.moe_transformer.transformer_block import MoETransformerBlock, make_norm, norm_parameter_count
from keras_moe.routing import reject_top_k
from keras_moe.utils.arguments import complete_arguments
from keras_moe.utils.validation import check_choice, check_fraction, check_positive_float, check_positive_int

POSITION_EMBEDDINGS = ("rotary", "learned")


def _blocks(c, dtype=None):
    """The (unbuilt) transformer blocks of config `c` (the constructor's arguments)."""
    moe = {key: c[key] for key in MOE_DEFAULTS}
    return [
        MoETransformerBlock(
            c["num_heads"], c["num_kv_heads"],
            make_feed_forward(i, c["intermediate_dim"], moe, c["dense_intermediate_dim"], c["kernel_initializer"], dtype),
            causal=c["causal"], normalization=c["normalization"], layer_norm_epsilon=c["layer_norm_epsilon"],
            use_rotary=c["position_embedding"] == "rotary", rope_max_wavelength=c["rope_max_wavelength"],
            head_dim=c["head_dim"], attention_bias=c["attention_bias"], sliding_window=c["sliding_window"],
            dropout=c["dropout"], kernel_initializer=c["kernel_initializer"], dtype=dtype, name=f"block_{i}",
        )
        for i in range(c["num_layers"])
    ]


def _check_config(c):
    """Validates the constructor's arguments (each error names the argument); returns them completed."""
    c = dict(c)
    c["num_kv_heads"] = c["num_heads"] if c["num_kv_heads"] is None else c["num_kv_heads"]
    for name in ("vocabulary_size", "num_layers", "num_heads", "hidden_dim", "intermediate_dim", "num_kv_heads",
                 "max_sequence_length"):
        check_positive_int(name, c[name])
    c.update(check_moe_arguments({key: c[key] for key in MOE_DEFAULTS}))
    check_choice("position_embedding", c["position_embedding"], POSITION_EMBEDDINGS)
    check_fraction("dropout", c["dropout"])
    if c["embedding_scale"] is not None:
        check_positive_float("embedding_scale", c["embedding_scale"])
    if c["head_dim"] is None and c["hidden_dim"] % c["num_heads"]:
        raise ValueError(
            f"`hidden_dim` must be a multiple of `num_heads`. Received: hidden_dim={c['hidden_dim']}, num_heads={c['num_heads']}"
        )
    if c["num_heads"] % c["num_kv_heads"]:
        raise ValueError(
            f"`num_heads` must be a multiple of `num_kv_heads`. Received: num_heads={c['num_heads']}, num_kv_heads={c['num_kv_heads']}"
        )
    return c


@keras.saving.register_keras_serializable(package="keras_moe")
class MoETransformerBackbone(MoEStackMixin, keras_hub.models.Backbone):
    """Token embedding, `num_layers` pre-norm blocks of attention + (dense FFN or MoE), final norm.

    Mixtral-style with the defaults (RMSNorm, rotary positions, grouped-query attention, SwiGLU
    experts, top-2, every block MoE); Switch-style encoders with `causal=False`, `router="switch"`,
    `normalization="layer"`, `moe_layer_interval=2`. `num_experts=0` gives the dense transformer.

    Args:
        vocabulary_size: int `v`.
        num_layers: int, transformer blocks.
        num_heads: int, query heads. num_kv_heads: int, key/value heads (GQA; default `num_heads`).
        hidden_dim: int `h`.
        intermediate_dim: int, FFN width of each expert.
        num_experts: int, experts per MoE block (0: dense model).
        router: router spec for every MoE block (name, `Router` or dict); each block gets its own.
            It sets `top_k`: `{"class_name": "top_k", "config": {"top_k": 1}}`.
        activation: FFN/expert activation (`"swiglu"` default).
        num_shared_experts: int, always-on experts per MoE block (DeepSeekMoE).
        use_bias: bool, biases in the FFNs and experts (GPT-2).
        dispatch, train_capacity_factor, eval_capacity_factor, min_expert_capacity: see `MoELayer`.
        num_dense_layers: int, leading dense blocks ("first N dense").
        moe_layer_interval: int, 1 = every block MoE, 2 = every other block.
        dense_intermediate_dim: int or None, width of dense FFN blocks (default `intermediate_dim`).
        normalization: `"rms"`, `"rms_plus_one"` (Gemma's `(1 + w)` scale) or `"layer"`.
        position_embedding: `"rotary"` or `"learned"`.
        max_sequence_length: int, for learned positions (and a bound on inputs).
        rope_max_wavelength: int. tie_embeddings: bool, share input embedding and output projection.
        head_dim: int or None, width of each attention head (default `hidden_dim // num_heads`).
        attention_bias: False, True (GPT-2) or `"qkv"` (Qwen): biases of the attention projections.
        sliding_window: int or None, attend only to the last `sliding_window` positions (Mistral).
        embedding_scale: float or None, multiplies the token embeddings (Gemma: `sqrt(hidden_dim)`).
        causal: bool, decoder (True) or encoder (False).
        dropout: float. layer_norm_epsilon: float. kernel_initializer: initializer.

    Inputs: `{"token_ids": int [b, s], "padding_mask": [b, s]}`. Output: `[b, s, h]`.

    Example:

    ```python
    backbone = keras_moe.models.MoETransformerBackbone(
        vocabulary_size=64, num_layers=2, num_heads=2, hidden_dim=16, intermediate_dim=16, num_experts=4)
    inputs = {"token_ids": np.ones((2, 5), "int32"), "padding_mask": np.ones((2, 5), "int32")}
    hidden, routing = backbone.call_with_routing(inputs)
    assert tuple(hidden.shape) == (2, 5, 16) and sorted(routing) == ["moe_0", "moe_1"]
    ```
    """

    def __init__(
        self,
        vocabulary_size,
        num_layers,
        num_heads,
        hidden_dim,
        intermediate_dim,
        num_kv_heads=None,
        num_experts=8,
        router="top_k",
        activation="swiglu",
        num_shared_experts=0,
        dispatch="capacity",
        train_capacity_factor=1.25,
        eval_capacity_factor=2.0,
        min_expert_capacity=4,
        num_dense_layers=0,
        moe_layer_interval=1,
        use_bias=False,
        dense_intermediate_dim=None,
        normalization="rms",
        position_embedding="rotary",
        max_sequence_length=2048,
        rope_max_wavelength=10000,
        tie_embeddings=False,
        head_dim=None,
        attention_bias=False,
        sliding_window=None,
        embedding_scale=None,
        causal=True,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        dtype=None,
        **kwargs,
    ):
        reject_top_k(kwargs)
        c = _check_config({k: v for k, v in locals().items() if k not in ("self", "kwargs", "dtype", "__class__")})

        # === Layers ===
        self.token_embedding = keras_hub.layers.ReversibleEmbedding(
            vocabulary_size, hidden_dim, tie_weights=tie_embeddings, embeddings_initializer=kernel_initializer,
            dtype=dtype, name="token_embedding",
        )
        self.position_embedding = None
        if position_embedding == "learned":
            self.position_embedding = keras_hub.layers.PositionEmbedding(max_sequence_length, dtype=dtype, name="position_embedding")
        self.transformer_layers = _blocks(c, dtype)
        self.layer_norm = make_norm(normalization, layer_norm_epsilon, dtype, "final_norm")
        self.embedding_scale = embedding_scale  # read by `embed`, which the functional model calls

        # === Functional Model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        hidden = self.embed(token_ids)
        for block in self.transformer_layers:
            hidden = block(hidden, padding_mask=padding_mask)
        sequence_output = self.layer_norm(hidden)
        super().__init__(
            inputs={"token_ids": token_ids, "padding_mask": padding_mask}, outputs=sequence_output, dtype=dtype, **kwargs
        )

        # === Config ===
        self.vocabulary_size = vocabulary_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.hidden_dim = hidden_dim
        self.intermediate_dim = intermediate_dim
        self.num_kv_heads = c["num_kv_heads"]
        self._set_moe_arguments(c)
        self.dense_intermediate_dim = dense_intermediate_dim
        self.normalization = normalization
        self.position_embedding_type = position_embedding
        self.max_sequence_length = max_sequence_length
        self.rope_max_wavelength = rope_max_wavelength
        self.tie_embeddings = tie_embeddings
        self.head_dim = head_dim or hidden_dim // num_heads
        self.attention_bias = attention_bias
        self.sliding_window = sliding_window
        self.causal = causal
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = kernel_initializer

    @classmethod
    def parameter_count(cls, **config):
        """`{"total", "active", "per_block"}` for the constructor's arguments, without allocating weights.

        Composes each (unbuilt) block's `parameter_count`, so published shapes such as Mixtral 8x7B
        (46.7B total, 12.9B active) can be sized on a laptop. Equals `count_params(backbone)`.
        """
        c = _check_config(complete_arguments(cls, config))
        h = c["hidden_dim"]
        embeddings = c["vocabulary_size"] * h * (1 if c["tie_embeddings"] else 2)
        if c["position_embedding"] == "learned":
            embeddings += c["max_sequence_length"] * h
        total = active = embeddings + norm_parameter_count(c["normalization"], h)
        per_block = []
        for block in _blocks(c):
            count = block.parameter_count(h)
            per_block.append(int(count["total"]))
            total, active = total + count["total"], active + count["active"]
        return {"total": int(total), "active": int(round(active)), "per_block": per_block}

    def embed(self, token_ids, start_index=0):
        hidden = self.token_embedding(token_ids)
        if self.embedding_scale is not None:
            hidden = hidden * ops.cast(self.embedding_scale, hidden.dtype)
        if self.position_embedding is not None:
            hidden = hidden + self.position_embedding(hidden, start_index=start_index)
        return hidden

    def call_with_routing(self, inputs, training=False):
        """`(sequence_output [b, s, h], {MoE layer name: routing object})` for backbone `inputs`.

        Runs the blocks one by one with `return_routing=True` (keras-hub's `output_router_logits`
        in spirit); what the export's `routing` signature serves.
        """
        hidden = self.embed(inputs["token_ids"])
        routings = {}
        for block in self.transformer_layers:
            hidden, routing = block(hidden, padding_mask=inputs["padding_mask"], training=training, return_routing=True)
            if routing is not None:
                routings[block.feed_forward.name] = routing
        return self.layer_norm(hidden), routings

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "num_kv_heads": self.num_kv_heads,
                **self.moe_config(),
                "dense_intermediate_dim": self.dense_intermediate_dim,
                "normalization": self.normalization,
                "position_embedding": self.position_embedding_type,
                "max_sequence_length": self.max_sequence_length,
                "rope_max_wavelength": self.rope_max_wavelength,
                "tie_embeddings": self.tie_embeddings,
                "head_dim": self.head_dim,
                "attention_bias": self.attention_bias,
                "sliding_window": self.sliding_window,
                "embedding_scale": self.embedding_scale,
                "causal": self.causal,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": self.kernel_initializer,
            }
        )
        return config

