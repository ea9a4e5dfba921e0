"""Base class of every router (gate).

Axis letters: `b` batch, `s` sequence, `t` tokens, `h` hidden, `e` experts, `k` choices per token.

A router owns the routing kernel `[h, e]` and turns token representations into a `RoutingResult`.
Subclasses implement `route(tokens, logits, mask, training)` only (turning float32 logits
`[t, e]` into a `RoutingResult`); the base class handles float32 math, jitter noise and the
router z-loss. Router math runs in float32 whatever the global dtype policy (Fedus et al. 2021,
"selective precision"), so routers ignore a `dtype` argument.
"""

import keras
from keras import ops

from keras_moe.losses import auxiliary
from keras_moe.utils.validation import check_non_negative_float, check_positive_int, check_top_k


def default_router_initializer():
    """Switch Transformer's small-scale truncated normal (`scale=0.1`, fan-in)."""
    return keras.initializers.VarianceScaling(scale=0.1, mode="fan_in", distribution="truncated_normal")


@keras.saving.register_keras_serializable(package="keras_moe")
class Router(keras.layers.Layer):
    """Base router: a linear map `[h] -> [e]` of router logits plus a routing rule.

    Args:
        num_experts: int, number of experts `e`.
        top_k: int, experts per token for token-choice routers.
        jitter_noise: float in [0, 1); when training, multiply router inputs by noise drawn
            uniformly from `[1 - jitter_noise, 1 + jitter_noise]` (Switch Transformer).
        router_z_loss_weight: float >= 0, weight of the router z-loss (ST-MoE).
        kernel_initializer: initializer of the `[h, e]` router kernel.
        seed: optional int seed for jitter and routing noise.

    Call args:
        tokens: float `[t, h]` (`[b, s, h]` for Soft MoE).
        mask: optional `[t]` (or `[b, s]`); 0 marks padding.
        training: bool.

    Returns:
        `RoutingResult`.
    """

    kind = "token_choice"
    aux_loss_names = ("router_z_loss",)

    def __init__(
        self,
        num_experts,
        top_k=1,
        jitter_noise=0.0,
        router_z_loss_weight=0.0,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        if not callable(getattr(self, "route", None)):
            # Subclasses implement `route(tokens, logits, mask, training) -> RoutingResult`.
            raise TypeError(f"{type(self).__name__} is a Router without a `route(tokens, logits, mask, training)` method.")
        kwargs.pop("dtype", None)
        super().__init__(dtype="float32", **kwargs)
        self.num_experts = check_positive_int("num_experts", num_experts)
        self.top_k = check_top_k(top_k, num_experts)
        self.jitter_noise = check_non_negative_float("jitter_noise", jitter_noise)
        if self.jitter_noise >= 1.0:
            raise ValueError(f"`jitter_noise` must be in [0, 1). Received: jitter_noise={jitter_noise!r}")
        self.router_z_loss_weight = check_non_negative_float("router_z_loss_weight", router_z_loss_weight)
        self.kernel_initializer = keras.initializers.get(kernel_initializer or default_router_initializer())
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True  # the mask is an explicit argument; the result carries no mask

    @property
    def experts_per_token(self):
        """Average number of experts that process one token (for active-parameter counts)."""
        return float(self.top_k)

    @property
    def num_router_outputs(self):
        """Width of the router kernel's output axis."""
        return self.num_experts

    def parameter_count(self, hidden_dim):
        """Weights this router creates for inputs of width `hidden_dim` (without building it)."""
        return hidden_dim * self.num_router_outputs

    def build(self, input_shape):
        hidden_dim = input_shape[-1]
        if hidden_dim is None:
            raise ValueError(f"The last axis of the router input must be known. Received shape {input_shape}")
        self.kernel = self.add_weight(
            name="kernel",
            shape=(hidden_dim, self.num_router_outputs),
            initializer=self.kernel_initializer,
        )

    def compute_logits(self, tokens, training=False):
        """Float32 router logits `[..., e]`, with multiplicative jitter when training."""
        tokens = ops.cast(tokens, "float32")
        if training and self.jitter_noise > 0:
            tokens = tokens * keras.random.uniform(
                ops.shape(tokens),
                minval=1.0 - self.jitter_noise,
                maxval=1.0 + self.jitter_noise,
                seed=self.seed_generator,
            )
        return ops.matmul(tokens, ops.cast(self.kernel, "float32"))

    def call(self, tokens, mask=None, training=False):
        logits = self.compute_logits(tokens, training=training)
        if mask is not None:
            mask = ops.cast(mask, "float32")
        result = self.route(tokens, logits, mask, training)
        if self.router_z_loss_weight > 0:
            flat_logits = ops.reshape(logits, (-1, ops.shape(logits)[-1]))
            flat_mask = None if mask is None else ops.reshape(mask, (-1,))
            result.aux_losses["router_z_loss"] = self.router_z_loss_weight * auxiliary.router_z_loss(
                flat_logits, flat_mask
            )
        return result

    def get_config(self):
        config = super().get_config()
        config.pop("dtype", None)
        config.update(
            {
                "num_experts": self.num_experts,
                "top_k": self.top_k,
                "jitter_noise": self.jitter_noise,
                "router_z_loss_weight": self.router_z_loss_weight,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "seed": self.seed,
            }
        )
        return config
