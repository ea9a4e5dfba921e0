"""The sparse Mixture-of-Experts layer: router -> dispatch -> expert bank -> combine.

Axis letters: `b` batch, `s` sequence, `t = b s` tokens, `k` choices per token, `e` experts, `h` hidden.
"""

import keras
from keras import ops

from keras_moe import routing as routing_lib
from keras_moe.distribution.replica_losses import ReplicaLocalLosses
from keras_moe.experts.expert_bank import ExpertBank
from keras_moe.experts.feed_forward import FeedForward
from keras_moe.losses import auxiliary
from keras_moe.metrics.routing_stats import RoutingStats, stats_are_writable
from keras_moe.routing.common import DispatchOptions, valid_tokens
from keras_moe.utils.validation import check_bool, check_choice, check_positive_float, check_positive_int

DISPATCH_MODES = tuple(routing_lib.DISPATCH_MODES)


@keras.saving.register_keras_serializable(package="keras_moe")
class MoELayer(ReplicaLocalLosses, keras.layers.Layer):  # per-replica add_loss: see ReplicaLocalLosses
    """A sparse Mixture-of-Experts feed-forward layer (Shazeer et al. 2017; GShard; Switch; Mixtral).

    Each token is routed to a few experts; expert FLOPs scale with the router's `top_k` (or the
    capacity), not with `num_experts`. The router's auxiliary losses are added with `add_loss`
    when training; routing statistics (`{name}_load_max`, `_load_min`, `_dropped`, `_entropy`,
    and each auxiliary loss) are reported by `model.fit`/`evaluate` through the layer's
    `routing_stats` metric unless `record_stats` is off.

    Args:
        num_experts: int `e`.
        intermediate_dim: int, FFN width of each expert.
        router: a registered name (`"top_k"`, `"noisy_top_k"`, `"switch"`, `"expert_choice"`,
            `"soft"`, `"sigmoid"`, `"dense"`), a `Router` instance (used as is: give each layer
            its own), or a dict `{"class_name": ..., "config": {...}}` (see `keras_moe.routing.get`).
            The router owns `top_k`: `{"class_name": "top_k", "config": {"top_k": 1}}`.
        activation: expert activation (`keras_moe.experts.activations`): `"swiglu"` (default,
            Mixtral), `"geglu"`, `"geglu_tanh"`, `"reglu"`, `"clamped_swiglu"`, `"relu"`, `"gelu"`,
            `"gelu_tanh"`, `"silu"`, or a dict with `name` and parameters.
        gate_up_layout: `"fused"`, `"interleaved"` or `"separate"` gate/up kernels (see `ExpertBank`).
        num_shared_experts: int >= 0, always-on experts (DeepSeekMoE), run as one dense FFN of
            width `num_shared_experts * shared_intermediate_dim`.
        shared_intermediate_dim: int or None, width of each shared expert (default `intermediate_dim`).
        shared_expert_gate: bool, multiply the shared experts' output by `sigmoid(x w)`, a learned
            per-token gate (Qwen1.5-MoE, Qwen3.5-MoE).
        dispatch: `"capacity"` (static shapes, overflow dropped, `jit_compile` friendly) or an
            exact mode (no token ever dropped): `"auto"` (the fastest exact mode for the backend,
            platform and token count, see `keras_moe.dispatch.choose`), `"dropless"` (grouped
            matmul: per-expert splits on TensorFlow, blocked under `jit_compile=True`;
            `jax.lax.ragged_dot` on JAX), `"blocked"` (static-shape block-sparse, MegaBlocks),
            `"gathered"` (each choice reads its expert's weights) or `"all_experts"` (every expert
            on every token, for a few tokens). Token-choice routers only; expert-choice and Soft
            MoE routing have their own fixed-size dispatch.
        train_capacity_factor: float > 0, capacity factor when training (capacity mode).
        eval_capacity_factor: float > 0, capacity factor at inference (capacity mode).
        min_expert_capacity: int > 0, smallest expert buffer (capacity mode).
        use_bias: bool, biases in the experts.
        use_output_scale: bool, a learned scale per expert on its output (Gemma 4).
        kernel_initializer: initializer of the expert kernels.
        record_stats: bool, update `routing_stats` on each call (see `keras_moe.layers.routing_statistics`
            to turn it off for a block of code, e.g. while tracing a serving function).
        lora_rank, lora_alpha: optional; per-expert LoRA adapters on the expert bank (see
            `keras_moe.experts.lora`; `enable_lora` on the bank, or a backbone's `enable_lora`, sets them).

    Call args:
        inputs: `[b, s, h]` or `[t, h]`.
        mask: optional `[b, s]` / `[t]`; padding takes no expert capacity and counts in no statistic.
        training: bool.
        router_inputs: optional tensor shaped like `inputs` that the router reads instead of
            `inputs` (Gemma 4 routes on the residual stream, its experts read a normalised copy).
        return_routing: bool; also return the routing object (`TokenChoiceRouting`,
            `ExpertChoiceRouting` or `SoftRouting`), keras-hub's `output_router_logits` in spirit.

    Example:

    ```python
    layer = keras_moe.layers.MoELayer(num_experts=8, intermediate_dim=32)
    outputs, routing = layer(np.random.rand(2, 5, 16).astype("float32"), return_routing=True)
    assert tuple(outputs.shape) == (2, 5, 16) and tuple(routing.expert_index.shape) == (10, 2)
    ```
    """

    def __init__(
        self,
        num_experts,
        intermediate_dim,
        router="top_k",
        activation="swiglu",
        gate_up_layout="fused",
        num_shared_experts=0,
        shared_intermediate_dim=None,
        shared_expert_gate=False,
        dispatch="capacity",
        train_capacity_factor=1.25,
        eval_capacity_factor=2.0,
        min_expert_capacity=4,
        use_bias=False,
        use_output_scale=False,
        kernel_initializer="glorot_uniform",
        record_stats=True,
        lora_rank=None,
        lora_alpha=None,
        **kwargs,
    ):
        routing_lib.reject_top_k(kwargs)
        super().__init__(**kwargs)
        self.num_experts = check_positive_int("num_experts", num_experts)
        self.intermediate_dim = check_positive_int("intermediate_dim", intermediate_dim)
        self.num_shared_experts = check_positive_int("num_shared_experts", num_shared_experts, allow_zero=True)
        if shared_intermediate_dim is not None:
            check_positive_int("shared_intermediate_dim", shared_intermediate_dim)
        self.shared_intermediate_dim = shared_intermediate_dim
        self.shared_expert_gate = check_bool("shared_expert_gate", shared_expert_gate)
        if self.shared_expert_gate and not num_shared_experts:
            raise ValueError("`shared_expert_gate=True` needs `num_shared_experts >= 1`. Received: num_shared_experts=0")
        self.dispatch = check_choice("dispatch", dispatch, DISPATCH_MODES)
        self.train_capacity_factor = check_positive_float("train_capacity_factor", train_capacity_factor)
        self.eval_capacity_factor = check_positive_float("eval_capacity_factor", eval_capacity_factor)
        self.min_expert_capacity = check_positive_int("min_expert_capacity", min_expert_capacity)
        self.record_stats = check_bool("record_stats", record_stats)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.router = self._make_router(router)
        self.experts = ExpertBank(
            num_experts,
            intermediate_dim,
            activation=activation,
            gate_up_layout=gate_up_layout,
            use_bias=use_bias,
            use_output_scale=use_output_scale,
            kernel_initializer=kernel_initializer,
            lora_rank=lora_rank,
            lora_alpha=lora_alpha,
            dtype=self.dtype_policy,
            name="experts",
        )
        self.shared_experts = self.shared_gate = None
        if num_shared_experts:
            self.shared_experts = FeedForward(
                (shared_intermediate_dim or intermediate_dim) * num_shared_experts,
                activation=activation,
                use_bias=use_bias,
                kernel_initializer=kernel_initializer,
                dtype=self.dtype_policy,
                name="shared_experts",
            )
        if self.shared_expert_gate:
            self.shared_gate = keras.layers.Dense(
                1, use_bias=False, kernel_initializer=kernel_initializer, dtype=self.dtype_policy, name="shared_expert_gate"
            )
        self.routing_stats = RoutingStats(num_experts, self.aux_loss_names, name=self.name)
        self.supports_masking = True

    def _make_router(self, router):
        if isinstance(router, routing_lib.Router):
            if router.num_experts != self.num_experts:
                raise ValueError(
                    f"The router's `num_experts` ({router.num_experts}) differs from the layer's "
                    f"`num_experts` ({self.num_experts})."
                )
            return router
        return routing_lib.get(router, num_experts=self.num_experts)

    @property
    def activation(self):
        return self.experts.activation

    @property
    def experts_per_token(self):
        """Average number of routed experts per token (for active-parameter counts)."""
        return self.router.experts_per_token

    @property
    def aux_loss_names(self):
        """Names of the auxiliary losses this layer can report (the router's, and the layer's own)."""
        return tuple(self.router.aux_loss_names)

    def parameter_count(self, hidden_dim):
        """`{"total", "active"}` weights for inputs of width `hidden_dim`, without building.

        `active`: weights used for one token; the expert bank counts `experts_per_token /
        num_experts` of its weights, everything else counts fully.
        """
        experts = self.experts.parameter_count(hidden_dim)
        other = self.router.parameter_count(hidden_dim)
        if self.shared_experts is not None:
            other += self.shared_experts.parameter_count(hidden_dim)
        if self.shared_gate is not None:
            other += hidden_dim
        share = min(1.0, self.experts_per_token / self.num_experts)
        return {"total": other + experts, "active": other + experts * share}

    def build(self, input_shape):
        hidden_shape = (None, input_shape[-1])
        for layer in (self.router, self.experts, self.shared_experts, self.shared_gate):
            if layer is not None and not layer.built:  # a deserialised router arrives built
                layer.build(hidden_shape)

    def dispatch_options(self, training):
        factor = self.train_capacity_factor if training else self.eval_capacity_factor
        return DispatchOptions(self.dispatch, factor, self.min_expert_capacity, bool(training))

    def call(self, inputs, mask=None, training=False, router_inputs=None, return_routing=False, **context):
        family = self.router.routing_type
        tokens, token_mask = family.tokens(inputs, mask)
        router_tokens = tokens if router_inputs is None else family.tokens(router_inputs, None)[0]
        routing = self.route(router_tokens, token_mask, training, **context)
        result = routing.dispatch(tokens, self.experts, self.dispatch_options(training), token_mask)
        self.record(routing, result, token_mask, training, **context)
        outputs = ops.reshape(result.outputs, ops.shape(inputs))
        if self.shared_experts is not None:
            outputs = outputs + self.shared_output(inputs)
        return (outputs, routing) if return_routing else outputs

    def route(self, tokens, mask, training):
        """The routing object for `tokens` (subclasses add context such as modality ids)."""
        return self.router(tokens, mask=mask, training=training)

    def record(self, routing, result, mask, training):
        """Adds the auxiliary losses when training and updates the routing statistics."""
        if training and routing.aux_losses:
            self.add_loss(sum(routing.aux_losses.values()))
        if self.record_stats and stats_are_writable(self.routing_stats):
            valid = valid_tokens(mask, ops.shape(routing.router_probs)[0])
            tokens = ops.sum(valid)
            entropy = auxiliary.router_entropy(routing.router_probs, valid) * tokens
            self.routing_stats.update_state(
                result.expert_counts, result.dropped, result.assignments, entropy, tokens, routing.aux_losses
            )

    def shared_output(self, inputs):
        """The always-on shared experts' output, times `sigmoid(x w)` with `shared_expert_gate`."""
        shared = self.shared_experts(inputs)
        return shared if self.shared_gate is None else gate_shared_output(shared, self.shared_gate(inputs))

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
                "router": keras.saving.serialize_keras_object(self.router),
                "activation": self.experts.activation,
                "gate_up_layout": self.experts.gate_up_layout,
                "num_shared_experts": self.num_shared_experts,
                "shared_intermediate_dim": self.shared_intermediate_dim,
                "shared_expert_gate": self.shared_expert_gate,
                "dispatch": self.dispatch,
                "train_capacity_factor": self.train_capacity_factor,
                "eval_capacity_factor": self.eval_capacity_factor,
                "min_expert_capacity": self.min_expert_capacity,
                "use_bias": self.experts.use_bias,
                "use_output_scale": self.experts.use_output_scale,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "record_stats": self.record_stats,
                "lora_rank": self.experts.lora_rank,
                "lora_alpha": self.experts.lora_alpha,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("router"), dict) and "module" in config["router"]:
            config["router"] = keras.saving.deserialize_keras_object(config["router"])
        return cls(**config)


def gate_shared_output(shared, gate_logits):
    """`sigmoid(gate_logits) * shared`: a per-token gate on the shared experts (Qwen1.5-MoE, Qwen3.5-MoE)."""
    return shared * ops.cast(ops.sigmoid(ops.cast(gate_logits, "float32")), shared.dtype)
