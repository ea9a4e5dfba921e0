"""Sigmoid routing with auxiliary-loss-free load balancing (DeepSeek-AI 2024, "DeepSeek-V3", section 2.1.2)."""

import keras
from keras import ops

from keras_moe.losses import auxiliary
from keras_moe.routing.registry import register_router
from keras_moe.routing.router import TokenChoiceRouter
from keras_moe.routing.token_choice import TokenChoiceRouting
from keras_moe.utils.validation import check_non_negative_float, check_positive_float


@register_router("sigmoid")
@keras.saving.register_keras_serializable(package="keras_moe")
class SigmoidRouter(TokenChoiceRouter):
    """Sigmoid affinities; a per-expert bias steers selection only and is updated from the load.

    `s = sigmoid(X W)`; each token picks `top_k(s + bias)`; its combine weights are the chosen
    `s`, normalised to sum to 1 and multiplied by `routed_scaling_factor`. During training every
    call moves `bias_e` by `bias_update_rate * sign(mean_load - load_e)` (not by gradient): overloaded
    experts become less attractive. `expert_bias` is a non-trainable weight, saved with the model.

    Args:
        num_experts: int `e`.
        top_k: int, experts per token.
        bias_update_rate: float, DeepSeek-V3's `gamma` (paper: 0.001).
        routed_scaling_factor: float, scale of the normalised combine weights.
        load_balancing_loss_weight: float, weight of the optional complementary balance loss
            (computed on the normalised sigmoid affinities; DeepSeek-V3 uses a tiny `alpha`).
        router_z_loss_weight, jitter_noise, use_bias, kernel_initializer, seed: see `Router`.

    Example:

    ```python
    router = keras_moe.routing.SigmoidRouter(num_experts=4, top_k=2)
    routing = router(np.random.rand(6, 8).astype("float32"), training=True)
    assert tuple(routing.expert_weight.shape) == (6, 2)
    ```
    """

    aux_loss_names = ("load_balancing_loss", "router_z_loss")

    def __init__(
        self,
        num_experts,
        top_k=2,
        bias_update_rate=1e-3,
        routed_scaling_factor=1.0,
        load_balancing_loss_weight=0.0,
        router_z_loss_weight=0.0,
        jitter_noise=0.0,
        use_bias=False,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            num_experts=num_experts,
            top_k=top_k,
            jitter_noise=jitter_noise,
            router_z_loss_weight=router_z_loss_weight,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            seed=seed,
            **kwargs,
        )
        self.bias_update_rate = check_non_negative_float("bias_update_rate", bias_update_rate)
        self.routed_scaling_factor = check_positive_float("routed_scaling_factor", routed_scaling_factor)
        self.load_balancing_loss_weight = check_non_negative_float(
            "load_balancing_loss_weight", load_balancing_loss_weight
        )

    def parameter_count(self, hidden_dim):
        return super().parameter_count(hidden_dim) + self.num_experts  # + the non-trainable bias

    def build(self, input_shape):
        super().build(input_shape)
        self.expert_bias = self.add_weight(
            name="expert_bias", shape=(self.num_experts,), initializer="zeros", trainable=False
        )

    def route(self, tokens, logits, mask, training, groups=None):
        scores = ops.sigmoid(logits)  # [t, e]
        _, index = ops.top_k(scores + ops.stop_gradient(self.expert_bias), self.top_k)
        index = ops.cast(index, "int32")
        weight = ops.take_along_axis(scores, index, axis=-1)
        weight = self.routed_scaling_factor * weight / (ops.sum(weight, axis=-1, keepdims=True) + 1e-9)
        if mask is not None:
            weight = weight * mask[:, None]
        probs = scores / ops.sum(scores, axis=-1, keepdims=True)
        if training and self.bias_update_rate > 0:
            load = auxiliary.expert_assignment_fraction(index, self.num_experts, mask)
            error = 1.0 / self.num_experts - load
            self.expert_bias.assign(self.expert_bias + self.bias_update_rate * ops.sign(error))
        aux = {}
        if self.load_balancing_loss_weight > 0:
            aux["load_balancing_loss"] = self.load_balancing_loss_weight * auxiliary.load_balancing_loss(
                probs, index, mask, groups
            )
        return TokenChoiceRouting(logits, probs, index, weight, aux)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "bias_update_rate": self.bias_update_rate,
                "routed_scaling_factor": self.routed_scaling_factor,
                "load_balancing_loss_weight": self.load_balancing_loss_weight,
            }
        )
        return config
