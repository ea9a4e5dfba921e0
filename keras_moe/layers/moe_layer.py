"""The sparse Mixture-of-Experts layer: router -> dispatch -> expert bank -> combine.

Axis letters: `b` batch, `s` sequence, `t = b s` tokens, `k` choices per token, `e` experts, `h` hidden.
"""

import keras
from keras import ops

from keras_moe import dispatch as dispatch_lib
from keras_moe import routing
from keras_moe.distribution.replica_losses import ReplicaLocalLosses
from keras_moe.experts.expert_bank import ExpertBank
from keras_moe.experts.feed_forward import FeedForward
from keras_moe.losses import auxiliary
from keras_moe.metrics.routing_stats import RoutingStats, stats_are_writable
from keras_moe.utils.validation import check_choice, check_positive_float, check_positive_int

DISPATCH_MODES = ("capacity", "dropless")


@keras.saving.register_keras_serializable(package="keras_moe")
class MoELayer(ReplicaLocalLosses, keras.layers.Layer):  # per-replica add_loss: see ReplicaLocalLosses
    """A sparse Mixture-of-Experts feed-forward layer (Shazeer et al. 2017; GShard; Switch; Mixtral).

    Each token is routed to a few experts; expert FLOPs scale with `top_k` (or the capacity), not
    with `num_experts`. Auxiliary losses are added with `add_loss` only when training; routing
    statistics (`{name}_load_max`, `_load_min`, `_dropped`, `_entropy`, and each auxiliary loss)
    are reported by `model.fit`/`evaluate` through the layer's `routing_stats` metric.

    Args:
        num_experts: int `e`.
        intermediate_dim: int, FFN width of each expert.
        top_k: int or None; experts per token for token-choice routers (None: the router's default).
        router: a registered name (`"top_k"`, `"noisy_top_k"`, `"switch"`, `"expert_choice"`,
            `"soft"`, `"sigmoid"`, `"dense"`), a `Router` instance (used as is: give each layer
            its own), or a dict `{"class_name": ..., "config": {...}}` (see `keras_moe.routing.get`).
        activation: expert activation, `"swiglu"` (default, Mixtral), `"geglu"`, `"reglu"`, `"relu"`,
            `"gelu"` or `"silu"`.
        num_shared_experts: int >= 0, always-on experts of width `intermediate_dim` (DeepSeekMoE),
            run as one dense FFN of width `num_shared_experts * intermediate_dim`.
        dispatch: `"capacity"` (static shapes, overflow dropped, `jit_compile` friendly) or
            `"dropless"` (grouped matmul, no token ever dropped; on TensorFlow its per-expert
            split has dynamic sizes, so compile with `jit_compile=False`; on JAX it is
            `jax.lax.ragged_dot` and jit-compiles). Token-choice routers only; expert-choice and
            Soft MoE have their own fixed-size dispatch.
        train_capacity_factor: float > 0, capacity factor when training (capacity mode).
        eval_capacity_factor: float > 0, capacity factor at inference (capacity mode).
        min_expert_capacity: int > 0, smallest expert buffer (capacity mode).
        use_bias: bool, biases in the experts.
        kernel_initializer: initializer of the expert kernels.

    Call args:
        inputs: `[b, s, h]` or `[t, h]`.
        mask: optional `[b, s]` / `[t]`; padding takes no expert capacity and counts in no statistic.
        training: bool.

    Example:
    >>> layer = MoELayer(num_experts=8, intermediate_dim=32, top_k=2)
    >>> layer(np.random.rand(2, 5, 16).astype("float32")).shape
    TensorShape([2, 5, 16])
    """

    def __init__(
        self,
        num_experts,
        intermediate_dim,
        top_k=None,
        router="top_k",
        activation="swiglu",
        num_shared_experts=0,
        dispatch="capacity",
        train_capacity_factor=1.25,
        eval_capacity_factor=2.0,
        min_expert_capacity=4,
        use_bias=False,
        kernel_initializer="glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_experts = check_positive_int("num_experts", num_experts)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.num_shared_experts = check_positive_int("num_shared_experts", num_shared_experts, allow_zero=True)
        self.dispatch = check_choice("dispatch", dispatch, DISPATCH_MODES)
        self.train_capacity_factor = check_positive_float("train_capacity_factor", train_capacity_factor)
        self.eval_capacity_factor = check_positive_float("eval_capacity_factor", eval_capacity_factor)
        self.min_expert_capacity = check_positive_int("min_expert_capacity", min_expert_capacity)
        self.top_k = top_k
        self.activation = activation
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.router = self._make_router(router, top_k)
        self.experts = ExpertBank(
            num_experts,
            intermediate_dim,
            activation=activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            dtype=self.dtype_policy,
            name="experts",
        )
        self.shared_experts = None
        if num_shared_experts:
            self.shared_experts = FeedForward(
                intermediate_dim * num_shared_experts,
                activation=activation,
                use_bias=use_bias,
                kernel_initializer=kernel_initializer,
                dtype=self.dtype_policy,
                name="shared_experts",
            )
        self.routing_stats = RoutingStats(num_experts, self.router.aux_loss_names, name=self.name)
        self.supports_masking = True

    def _make_router(self, router, top_k):
        if isinstance(router, routing.Router):
            if router.num_experts != self.num_experts:
                raise ValueError(
                    f"The router's `num_experts` ({router.num_experts}) differs from the layer's "
                    f"`num_experts` ({self.num_experts})."
                )
            if top_k is not None and router.kind == "token_choice" and router.top_k != top_k:
                raise ValueError(f"The router's `top_k` ({router.top_k}) differs from the layer's `top_k` ({top_k}).")
            return router
        return routing.get(router, num_experts=self.num_experts, top_k=top_k)

    @property
    def experts_per_token(self):
        """Average number of routed experts per token (for active-parameter counts)."""
        return self.router.experts_per_token

    def build(self, input_shape):
        hidden_shape = (None, input_shape[-1])
        sublayers = [(self.router, input_shape if self.router.kind == "soft" else hidden_shape), (self.experts, hidden_shape)]
        if self.shared_experts is not None:
            sublayers.append((self.shared_experts, hidden_shape))
        for layer, shape in sublayers:
            if not layer.built:  # a deserialised router arrives built
                layer.build(shape)

    def capacity(self, num_tokens, training):
        factor = self.train_capacity_factor if training else self.eval_capacity_factor
        return dispatch_lib.expert_capacity(num_tokens, self.num_experts, self.router.top_k, factor, self.min_expert_capacity)

    def call(self, inputs, mask=None, training=False):
        tokens, token_mask = self._tokens(inputs, mask)
        result = self.router(tokens, mask=token_mask, training=training)
        outputs, counts, dropped, assignments = self._dispatch(tokens, result, token_mask, training)
        self._record(result, counts, dropped, assignments, token_mask, training)
        outputs = ops.reshape(outputs, ops.shape(inputs))
        if self.shared_experts is not None:
            outputs = outputs + self.shared_experts(inputs)
        return outputs

    def _tokens(self, inputs, mask):
        if mask is not None:
            mask = ops.cast(mask, "float32")
        if self.router.kind == "soft":
            if len(inputs.shape) == 2:
                return inputs[None], None if mask is None else mask[None]
            return inputs, mask
        tokens = ops.reshape(inputs, (-1, inputs.shape[-1]))
        return tokens, None if mask is None else ops.reshape(mask, (-1,))

    def _dispatch(self, tokens, result, mask, training):
        """Returns `(outputs, expert_counts [e], dropped, assignments)` for the statistics."""
        if result.kind == "soft":
            outputs = dispatch_lib.soft_dispatch(
                tokens, result.dispatch_weights, result.combine_weights, self.experts, self.router.num_slots
            )
            valid = 1.0 if mask is None else ops.reshape(mask, (-1, 1))
            return outputs, ops.sum(result.router_probs * valid, axis=0), 0.0, 0.0
        if result.kind == "expert_choice":
            outputs, chosen = dispatch_lib.expert_choice_dispatch(tokens, result.token_index, result.token_weight, self.experts)
            valid = ops.ones_like(chosen, "float32") if mask is None else mask
            counts = ops.sum(ops.cast(result.token_weight > 0, "float32"), axis=1)
            return outputs, counts, ops.sum(ops.cast(chosen == 0, "float32") * valid), ops.sum(valid)
        if self.dispatch == "dropless":
            outputs, kept = dispatch_lib.dropless_dispatch(tokens, result.expert_index, result.expert_weight, self.experts, mask)
        else:
            num_tokens = tokens.shape[0] if tokens.shape[0] is not None else ops.shape(tokens)[0]
            capacity = self.capacity(num_tokens, training)
            outputs, kept = dispatch_lib.capacity_dispatch(
                tokens, result.expert_index, result.expert_weight, self.experts, capacity, mask
            )
        valid = ops.ones_like(result.expert_weight) if mask is None else ops.broadcast_to(mask[:, None], ops.shape(kept))
        routed = ops.one_hot(result.expert_index, self.num_experts, dtype="float32") * valid[:, :, None]
        dropped = ops.sum(valid * (1.0 - ops.cast(kept, "float32")))
        return outputs, ops.sum(routed, axis=(0, 1)), dropped, ops.sum(valid)

    def _record(self, result, counts, dropped, assignments, mask, training):
        probs = result.router_probs
        valid = ops.ones((ops.shape(probs)[0],), "float32") if mask is None else ops.reshape(mask, (-1,))
        entropy = auxiliary.router_entropy(probs, valid) * ops.sum(valid)
        if stats_are_writable(self.routing_stats):
            self.routing_stats.update_state(counts, dropped, assignments, entropy, ops.sum(valid), result.aux_losses)
        if training and result.aux_losses:
            self.add_loss(sum(result.aux_losses.values()))

    def compute_output_shape(self, input_shape):
        return input_shape

    def compute_mask(self, inputs, mask=None):
        return mask

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_experts": self.num_experts,
                "intermediate_dim": self.intermediate_dim,
                "top_k": self.top_k,
                "router": keras.saving.serialize_keras_object(self.router),
                "activation": self.activation,
                "num_shared_experts": self.num_shared_experts,
                "dispatch": self.dispatch,
                "train_capacity_factor": self.train_capacity_factor,
                "eval_capacity_factor": self.eval_capacity_factor,
                "min_expert_capacity": self.min_expert_capacity,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("router"), dict) and "module" in config["router"]:
            config["router"] = keras.saving.deserialize_keras_object(config["router"])
        return cls(**config)
