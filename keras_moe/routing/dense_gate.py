"""A dense softmax gate over all experts: the classical mixture of experts (Jacobs et al. 1991)."""

import keras
from keras import ops

from keras_moe.losses import auxiliary
from keras_moe.routing.registry import register_router
from keras_moe.routing.router import TokenChoiceRouter
from keras_moe.routing.token_choice import TokenChoiceRouting
from keras_moe.utils.validation import check_non_negative_float


@register_router("dense")
@keras.saving.register_keras_serializable(package="keras_moe")
class DenseGate(TokenChoiceRouter):
    """Softmax over all experts; every expert processes every token, weighted by the gate.

    Used by `MixtureOfModels` (whole Keras models as experts) and usable in `MoELayer`, where it
    behaves as top-k routing with `k = num_experts` (no sparsity: for comparisons and small `e`).

    Args:
        num_experts: int `e`.
        entropy_loss_weight: float >= 0; adds `-weight * mean entropy` of the gate when > 0, to
            discourage an early collapse onto one expert.
        router_z_loss_weight, jitter_noise, use_bias, kernel_initializer, seed: see `Router`.

    Example:

    ```python
    gate = keras_moe.routing.DenseGate(num_experts=3)
    assert tuple(gate(np.random.rand(4, 8).astype("float32")).router_probs.shape) == (4, 3)
    ```
    """

    aux_loss_names = ("entropy_loss", "router_z_loss")

    def __init__(
        self,
        num_experts,
        entropy_loss_weight=0.0,
        router_z_loss_weight=0.0,
        jitter_noise=0.0,
        use_bias=False,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        if kwargs.pop("top_k", num_experts) != num_experts:
            raise ValueError(f"`DenseGate` weighs all {num_experts} experts; it takes no other top_k.")
        super().__init__(
            num_experts=num_experts,
            top_k=num_experts,
            jitter_noise=jitter_noise,
            router_z_loss_weight=router_z_loss_weight,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            seed=seed,
            **kwargs,
        )
        self.entropy_loss_weight = check_non_negative_float("entropy_loss_weight", entropy_loss_weight)

    def route(self, tokens, logits, mask, training, groups=None):
        probs = ops.softmax(logits, axis=-1)
        weight = probs if mask is None else probs * mask[:, None]
        index = ops.broadcast_to(ops.arange(self.num_experts, dtype="int32")[None, :], ops.shape(probs))
        aux = {}
        if self.entropy_loss_weight > 0:
            aux["entropy_loss"] = -self.entropy_loss_weight * auxiliary.router_entropy(probs, mask)
        return TokenChoiceRouting(logits, probs, index, weight, aux)

    def get_config(self):
        config = super().get_config()
        config.pop("top_k")
        config["entropy_loss_weight"] = self.entropy_loss_weight
        return config
