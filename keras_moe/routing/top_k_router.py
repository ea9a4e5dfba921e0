"""Token-choice top-k softmax routing (Shazeer et al. 2017; Mixtral, Jiang et al. 2024)."""

import keras

from keras_moe.routing.registry import register_router
from keras_moe.routing.router import TokenChoiceRouter
from keras_moe.routing.token_choice import softmax_top_k_routing
from keras_moe.utils.validation import check_non_negative_float


@register_router("top_k")
@keras.saving.register_keras_serializable(package="keras_moe")
class TopKRouter(TokenChoiceRouter):
    """Each token picks its `top_k` most probable experts under a softmax router.

    Combine weights are the softmax probabilities of the chosen experts, renormalised to sum to 1
    with `normalize_top_k=True` when `top_k > 1` (Mixtral), at every `top_k` with `"always"`
    (Mixtral's and Qwen's `norm_topk_prob`: weight exactly 1 at `top_k = 1`, so the router learns
    only from its auxiliary losses) or `"straight_through"` (weight 1 at `top_k = 1` with the
    probability's gradient; `keras_moe.routing.top_k_choices`), or left as they are with `False`
    (Switch, GShard).

    Args:
        num_experts: int `e`.
        top_k: int, experts per token.
        normalize_top_k: `True`, `False`, `"always"` or `"straight_through"`, see above.
        load_balancing_loss_weight: float, weight of the Switch/GShard load-balancing loss.
        router_z_loss_weight, jitter_noise, use_bias, kernel_initializer, seed: see `Router`.

    Example:

    ```python
    router = keras_moe.routing.TopKRouter(num_experts=4, top_k=2)
    routing = router(np.random.rand(6, 8).astype("float32"))
    assert tuple(routing.expert_index.shape) == (6, 2)
    ```
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
        if not (isinstance(normalize_top_k, bool) or normalize_top_k in ("always", "straight_through")):
            raise ValueError(
                "`normalize_top_k` must be True, False, 'always' or 'straight_through'. "
                f"Received: normalize_top_k={normalize_top_k!r}"
            )
        self.normalize_top_k = normalize_top_k
        self.load_balancing_loss_weight = check_non_negative_float(
            "load_balancing_loss_weight", load_balancing_loss_weight
        )

    def route(self, tokens, logits, mask, training, groups=None):
        return softmax_top_k_routing(logits, self.top_k, self.normalize_top_k, mask, self.load_balancing_loss_weight, groups)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "normalize_top_k": self.normalize_top_k,
                "load_balancing_loss_weight": self.load_balancing_loss_weight,
            }
        )
        return config
