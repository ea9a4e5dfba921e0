"""Base classes of every router (gate).

Axis letters: `b` batch, `s` sequence, `t` tokens, `h` hidden, `e` experts, `k` choices per token.

A router owns the routing kernel `[h, e]` (and an optional bias `[e]`) and turns token
representations into one routing object of its family (`routing_type`: `TokenChoiceRouting`,
`ExpertChoiceRouting` or `SoftRouting`). Subclasses implement
`route(tokens, logits, mask, training, groups)` only (float32 logits `[t, e]` -> a routing
object); the base class handles float32 math, jitter noise, the masking of experts a token group
may not use, and the router z-loss. Router math runs in float32 whatever the global dtype policy
(Fedus et al. 2021, "selective precision"), so routers ignore a `dtype` argument.
"""

import keras
from keras import ops

from keras_moe.losses import auxiliary
from keras_moe.routing.common import MASKED_LOGIT, with_aux_losses
from keras_moe.routing.token_choice import TokenChoiceRouting
from keras_moe.utils.validation import check_bool, check_non_negative_float, check_positive_int, check_top_k


def default_router_initializer():
    """Switch Transformer's small-scale truncated normal (`scale=0.1`, fan-in)."""
    return keras.initializers.VarianceScaling(scale=0.1, mode="fan_in", distribution="truncated_normal")


@keras.saving.register_keras_serializable(package="keras_moe")
class Router(keras.layers.Layer):
    """Base router: a linear map `[h] -> [e]` of router logits plus a routing rule.

    Args:
        num_experts: int, number of experts `e`.
        jitter_noise: float in [0, 1); when training, multiply router inputs by noise drawn
            uniformly from `[1 - jitter_noise, 1 + jitter_noise]` (Switch Transformer).
        router_z_loss_weight: float >= 0, weight of the router z-loss (ST-MoE).
        use_bias: bool, a learned bias `[e]` on the logits (GPT-OSS's router has one).
        kernel_initializer: initializer of the `[h, e]` router kernel.
        seed: optional int seed for jitter and routing noise.

    Call args:
        tokens: float `[t, h]` (`[b, s, h]` for Soft MoE).
        mask: optional `[t]` (or `[b, s]`); 0 marks padding.
        training: bool.
        groups: optional `TokenGroups`: token groups (e.g. modalities) restricted to some experts.

    Returns:
        The routing object of the router's family (`routing_type`).
    """

    routing_type = TokenChoiceRouting
    aux_loss_names = ("router_z_loss",)

    def __init__(
        self,
        num_experts,
        jitter_noise=0.0,
        router_z_loss_weight=0.0,
        use_bias=False,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        if not callable(getattr(self, "route", None)):
            raise TypeError(
                f"{type(self).__name__} is a Router without a `route(tokens, logits, mask, training, groups)` method."
            )
        kwargs.pop("dtype", None)
        super().__init__(dtype="float32", **kwargs)
        self.num_experts = check_positive_int("num_experts", num_experts)
        self.jitter_noise = check_non_negative_float("jitter_noise", jitter_noise)
        if self.jitter_noise >= 1.0:
            raise ValueError(f"`jitter_noise` must be in [0, 1). Received: jitter_noise={jitter_noise!r}")
        self.router_z_loss_weight = check_non_negative_float("router_z_loss_weight", router_z_loss_weight)
        self.use_bias = check_bool("use_bias", use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or default_router_initializer())
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True  # the mask is an explicit argument; the result carries no mask

    @property
    def experts_per_token(self):
        """Average number of experts that process one token (for active-parameter counts)."""
        raise NotImplementedError(f"{type(self).__name__} must define `experts_per_token`.")

    @property
    def num_router_outputs(self):
        """Width of the router kernel's output axis."""
        return self.num_experts

    def parameter_count(self, hidden_dim):
        """Weights this router creates for inputs of width `hidden_dim` (without building it)."""
        return (hidden_dim + int(self.use_bias)) * self.num_router_outputs

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim is None:
            raise ValueError(f"The last axis of the router input must be known. Received shape {input_shape}")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(hidden_dim, self.num_router_outputs),
            initializer=self.kernel_initializer,
        )
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.num_router_outputs,), initializer="zeros")

    def jitter(self, tokens, training):
        """float32 tokens, multiplied by uniform noise when training with `jitter_noise > 0`."""
        tokens = ops.cast(tokens, "float32")
        if training and self.jitter_noise > 0:
            tokens = tokens * keras.random.uniform(
                ops.shape(tokens),
                minval=1.0 - self.jitter_noise,
                maxval=1.0 + self.jitter_noise,
                seed=self.seed_generator,
            )
        return tokens

    def compute_logits(self, tokens, training=False):
        """Float32 router logits `[..., e]`, with multiplicative jitter when training."""
        logits = ops.matmul(self.jitter(tokens, training), ops.cast(self.kernel, "float32"))
        return logits + ops.cast(self.bias, "float32") if self.use_bias else logits

    def call(self, tokens, mask=None, training=False, groups=None):
        logits = self.compute_logits(tokens, training=training)
        if groups is not None:
            if len(logits.shape) != 2:
                raise ValueError(f"Token groups need flat tokens [t, h]; {type(self).__name__} routes shape {tokens.shape}.")
            logits = ops.where(groups.logit_mask() > 0, logits, MASKED_LOGIT)
        if mask is not None:
            mask = ops.cast(mask, "float32")
        routing = self.route(tokens, logits, mask, training, groups)
        if self.router_z_loss_weight > 0:
            flat_logits = ops.reshape(logits, (-1, ops.shape(logits)[-1]))
            flat_mask = None if mask is None else ops.reshape(mask, (-1,))
            z_loss = auxiliary.router_z_loss(flat_logits, flat_mask)
            routing = with_aux_losses(routing, router_z_loss=self.router_z_loss_weight * z_loss)
        return routing

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(
            {
                "num_experts": self.num_experts,
                "jitter_noise": self.jitter_noise,
                "router_z_loss_weight": self.router_z_loss_weight,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_moe")
class TokenChoiceRouter(Router):
    """Base of routers where each token picks `top_k` experts (`TokenChoiceRouting`).

    `top_k` lives here and only here: the MoE layer reads it from its router.

    Args:
        num_experts: int `e`.
        top_k: int in `[1, e]`, experts per token.
        jitter_noise, router_z_loss_weight, use_bias, kernel_initializer, seed: see `Router`.
    """

    def __init__(self, num_experts, top_k=2, **kwargs):
        super().__init__(num_experts=num_experts, **kwargs)
        self.top_k = check_top_k(top_k, num_experts)

    @property
    def experts_per_token(self):
        return float(self.top_k)

    def get_config(self):
        config = super().get_config()
        config["top_k"] = self.top_k
        return config
