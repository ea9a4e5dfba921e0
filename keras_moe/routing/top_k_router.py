"""Token-choice top-k softmax routing (Shazeer et al. 2017; Mixtral, Jiang et al. 2024)."""

import keras
from keras import ops

from keras_moe.losses import auxiliary
from keras_moe.routing.router import Router
from keras_moe.routing.routing_result import RoutingResult
from keras_moe.utils.validation import check_non_negative_float


@keras.saving.register_keras_serializable(package="keras_moe")
class TopKRouter(Router):
    """Each token picks its `top_k` most probable experts under a softmax router.

    Combine weights are the softmax probabilities of the chosen experts, renormalised to sum to 1
    when `normalize_top_k=True` (Mixtral) or left as they are (Switch, GShard). With `top_k=1`
    the weight stays the probability either way: a constant 1 would give the router no gradient.

    Args:
        num_experts: int `e`.
        top_k: int, experts per token.
        normalize_top_k: bool, renormalise the chosen probabilities to sum to 1.
        load_balancing_loss_weight: float, weight of the Switch/GShard load-balancing loss.
        router_z_loss_weight, jitter_noise, kernel_initializer, seed: see `Router`.

    Example:
    >>> router = TopKRouter(num_experts=4, top_k=2)
    >>> result = router(np.random.rand(6, 8).astype("float32"))
    >>> result.expert_index.shape, result.expert_weight.shape
    (TensorShape([6, 2]), TensorShape([6, 2]))
    """

    aux_loss_names = ("load_balancing_loss", "router_z_loss")

    def __init__(
        self,
        num_experts,
        top_k=2,
        normalize_top_k=True,
        load_balancing_loss_weight=0.01,
        router_z_loss_weight=0.001,
        jitter_noise=0.0,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            num_experts=num_experts,
            top_k=top_k,
            jitter_noise=jitter_noise,
            router_z_loss_weight=router_z_loss_weight,
            kernel_initializer=kernel_initializer,
            seed=seed,
            **kwargs,
        )
        if not isinstance(normalize_top_k, bool):
            raise ValueError(f"`normalize_top_k` must be a bool. Received: normalize_top_k={normalize_top_k!r}")
        self.normalize_top_k = normalize_top_k
        self.load_balancing_loss_weight = check_non_negative_float(
            "load_balancing_loss_weight", load_balancing_loss_weight
        )

    def route(self, tokens, logits, mask, training):
        probs = ops.softmax(logits, axis=-1)  # [t, e]
        weight, index = ops.top_k(probs, self.top_k)  # [t, k]
        if self.normalize_top_k and self.top_k > 1:
            weight = weight / ops.sum(weight, axis=-1, keepdims=True)
        if mask is not None:
            weight = weight * mask[:, None]
        aux = {}
        if self.load_balancing_loss_weight > 0:
            aux["load_balancing_loss"] = self.load_balancing_loss_weight * auxiliary.load_balancing_loss(
                probs, index, mask
            )
        return RoutingResult(
            kind="token_choice",
            router_probs=probs,
            expert_index=ops.cast(index, "int32"),
            expert_weight=weight,
            aux_losses=aux,
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "normalize_top_k": self.normalize_top_k,
                "load_balancing_loss_weight": self.load_balancing_loss_weight,
            }
        )
        return config
