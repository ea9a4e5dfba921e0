"""A transformer backbone whose feed-forward blocks are (partly) Mixture-of-Experts layers.

Axis letters: `b` batch, `s` sequence, `h` hidden, `v` vocabulary.
"""

import keras
import keras_hub
from keras import ops

from keras_moe import routing
from keras_moe.experts.feed_forward import FeedForward
from keras_moe.layers.moe_layer import MoELayer
from keras_moe.models.moe_transformer.transformer_block import MoETransformerBlock, make_norm
from keras_moe.utils.validation import check_choice, check_positive_int

POSITION_EMBEDDINGS = ("rotary", "learned")


def is_moe_block(index, num_experts, num_dense_layers, moe_layer_interval):
    """Block `index` is an MoE block: after the first `num_dense_layers`, every `moe_layer_interval`-th."""
    return num_experts > 0 and index >= num_dense_layers and (index - num_dense_layers) % moe_layer_interval == 0


@keras.saving.register_keras_serializable(package="keras_moe")
class MoETransformerBackbone(keras_hub.models.Backbone):
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
        top_k: int or None, experts per token (None: the router's default).
        router: router spec for every MoE block (name, `Router` or dict); each block gets its own.
        activation: FFN/expert activation (`"swiglu"` default).
        num_shared_experts: int, always-on experts per MoE block (DeepSeekMoE).
        dispatch, train_capacity_factor, eval_capacity_factor, min_expert_capacity: see `MoELayer`.
        num_dense_layers: int, leading dense blocks ("first N dense").
        moe_layer_interval: int, 1 = every block MoE, 2 = every other block.
        dense_intermediate_dim: int or None, width of dense FFN blocks (default `intermediate_dim`).
        normalization: `"rms"` or `"layer"`. position_embedding: `"rotary"` or `"learned"`.
        max_sequence_length: int, for learned positions (and a bound on inputs).
        rope_max_wavelength: int. tie_embeddings: bool, share input embedding and output projection.
        causal: bool, decoder (True) or encoder (False).
        dropout: float. layer_norm_epsilon: float. kernel_initializer: initializer.

    Inputs: `{"token_ids": int [b, s], "padding_mask": [b, s]}`. Output: `[b, s, h]`.
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
        top_k=2,
        router="top_k",
        activation="swiglu",
        num_shared_experts=0,
        dispatch="capacity",
        train_capacity_factor=1.25,
        eval_capacity_factor=2.0,
        min_expert_capacity=4,
        num_dense_layers=0,
        moe_layer_interval=1,
        dense_intermediate_dim=None,
        normalization="rms",
        position_embedding="rotary",
        max_sequence_length=2048,
        rope_max_wavelength=10000,
        tie_embeddings=False,
        causal=True,
        dropout=0.0,
        layer_norm_epsilon=1e-5,
        kernel_initializer="glorot_uniform",
        dtype=None,
        **kwargs,
    ):
        num_kv_heads = num_heads if num_kv_heads is None else num_kv_heads
        for name, value in (("vocabulary_size", vocabulary_size), ("num_layers", num_layers), ("num_heads", num_heads),
                            ("hidden_dim", hidden_dim), ("intermediate_dim", intermediate_dim),
                            ("num_kv_heads", num_kv_heads), ("moe_layer_interval", moe_layer_interval),
                            ("max_sequence_length", max_sequence_length)):
            check_positive_int(name, value)
        check_positive_int("num_experts", num_experts, allow_zero=True)
        check_positive_int("num_dense_layers", num_dense_layers, allow_zero=True)
        check_choice("position_embedding", position_embedding, POSITION_EMBEDDINGS)
        if hidden_dim % num_heads:
            raise ValueError(f"`hidden_dim` must be a multiple of `num_heads`. Received: hidden_dim={hidden_dim}, num_heads={num_heads}")
        if num_heads % num_kv_heads:
            raise ValueError(f"`num_heads` must be a multiple of `num_kv_heads`. Received: num_heads={num_heads}, num_kv_heads={num_kv_heads}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout!r}")
        dense_width = dense_intermediate_dim or intermediate_dim

        # === Layers ===
        self.token_embedding = keras_hub.layers.ReversibleEmbedding(
            vocabulary_size, hidden_dim, tie_weights=tie_embeddings, embeddings_initializer=kernel_initializer,
            dtype=dtype, name="token_embedding",
        )
        self.position_embedding = None
        if position_embedding == "learned":
            self.position_embedding = keras_hub.layers.PositionEmbedding(max_sequence_length, dtype=dtype, name="position_embedding")
        self.transformer_layers = []
        for i in range(num_layers):
            if is_moe_block(i, num_experts, num_dense_layers, moe_layer_interval):
                # `routing.get` builds a fresh router per block, so blocks never share router weights.
                feed_forward = MoELayer(
                    num_experts, intermediate_dim, top_k=top_k,
                    router=routing.get(router, num_experts=num_experts, top_k=top_k), activation=activation,
                    num_shared_experts=num_shared_experts, dispatch=dispatch,
                    train_capacity_factor=train_capacity_factor, eval_capacity_factor=eval_capacity_factor,
                    min_expert_capacity=min_expert_capacity, kernel_initializer=kernel_initializer,
                    dtype=dtype, name=f"moe_{i}",
                )
            else:
                feed_forward = FeedForward(dense_width, activation=activation, kernel_initializer=kernel_initializer, dtype=dtype, name=f"ffn_{i}")
            self.transformer_layers.append(
                MoETransformerBlock(
                    num_heads, num_kv_heads, feed_forward, causal=causal, normalization=normalization,
                    layer_norm_epsilon=layer_norm_epsilon, use_rotary=position_embedding == "rotary",
                    rope_max_wavelength=rope_max_wavelength, dropout=dropout, kernel_initializer=kernel_initializer,
                    dtype=dtype, name=f"block_{i}",
                )
            )
        self.layer_norm = make_norm(normalization, layer_norm_epsilon, dtype, "final_norm")

        # === Functional Model ===
        token_ids = keras.Input(shape=(None,), dtype="int32", name="token_ids")
        padding_mask = keras.Input(shape=(None,), dtype="int32", name="padding_mask")
        hidden = self.token_embedding(token_ids)
        if self.position_embedding is not None:
            hidden = hidden + self.position_embedding(hidden)
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
        self.num_kv_heads = num_kv_heads
        self.num_experts = num_experts
        self.top_k = top_k
        self.router = router
        self.activation = activation
        self.num_shared_experts = num_shared_experts
        self.dispatch = dispatch
        self.train_capacity_factor = train_capacity_factor
        self.eval_capacity_factor = eval_capacity_factor
        self.min_expert_capacity = min_expert_capacity
        self.num_dense_layers = num_dense_layers
        self.moe_layer_interval = moe_layer_interval
        self.dense_intermediate_dim = dense_intermediate_dim
        self.normalization = normalization
        self.position_embedding_type = position_embedding
        self.max_sequence_length = max_sequence_length
        self.rope_max_wavelength = rope_max_wavelength
        self.tie_embeddings = tie_embeddings
        self.causal = causal
        self.dropout = dropout
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = kernel_initializer

    @property
    def moe_layers(self):
        return [block.feed_forward for block in self.transformer_layers if block.is_moe]

    @property
    def head_dim(self):
        return self.hidden_dim // self.num_heads

    def embed(self, token_ids, start_index=0):
        hidden = self.token_embedding(token_ids)
        if self.position_embedding is not None:
            hidden = hidden + self.position_embedding(hidden, start_index=start_index)
        return hidden

    def get_config(self):
        config = super().get_config()
        router = self.router
        if isinstance(router, keras.layers.Layer):
            router = keras.saving.serialize_keras_object(router)
        config.update(
            {
                "vocabulary_size": self.vocabulary_size,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "hidden_dim": self.hidden_dim,
                "intermediate_dim": self.intermediate_dim,
                "num_kv_heads": self.num_kv_heads,
                "num_experts": self.num_experts,
                "top_k": self.top_k,
                "router": router,
                "activation": self.activation,
                "num_shared_experts": self.num_shared_experts,
                "dispatch": self.dispatch,
                "train_capacity_factor": self.train_capacity_factor,
                "eval_capacity_factor": self.eval_capacity_factor,
                "min_expert_capacity": self.min_expert_capacity,
                "num_dense_layers": self.num_dense_layers,
                "moe_layer_interval": self.moe_layer_interval,
                "dense_intermediate_dim": self.dense_intermediate_dim,
                "normalization": self.normalization,
                "position_embedding": self.position_embedding_type,
                "max_sequence_length": self.max_sequence_length,
                "rope_max_wavelength": self.rope_max_wavelength,
                "tie_embeddings": self.tie_embeddings,
                "causal": self.causal,
                "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": self.kernel_initializer,
            }
        )
        return config
