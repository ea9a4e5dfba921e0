"""Switch Transformer top-1 routing (Fedus et al. 2021, "Switch Transformers")."""

import keras

from keras_moe.routing.top_k_router import TopKRouter


@keras.saving.register_keras_serializable(package="keras_moe")
class SwitchRouter(TopKRouter):
    """Each token goes to its single most probable expert, scaled by that expert's probability.

    Capacity (the Switch paper's train and eval capacity factors) is applied by `MoELayer` in its
    `"capacity"` dispatch mode: `train_capacity_factor`, `eval_capacity_factor`,
    `min_expert_capacity`. Tokens past an expert's capacity skip the layer through the residual.

    Args:
        num_experts: int `e`.
        load_balancing_loss_weight: float, Switch's auxiliary loss weight (paper: 0.01).
        router_z_loss_weight, jitter_noise, kernel_initializer, seed: see `Router`.

    Example:
    >>> router = SwitchRouter(num_experts=4)
    >>> router(np.random.rand(6, 8).astype("float32")).expert_index.shape
    TensorShape([6, 1])
    """

    def __init__(
        self,
        num_experts,
        load_balancing_loss_weight=0.01,
        router_z_loss_weight=0.0,
        jitter_noise=0.0,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        top_k = kwargs.pop("top_k", 1)
        if top_k != 1:
            raise ValueError(f"`SwitchRouter` sends each token to one expert; use `TopKRouter` for top_k > 1. Received: top_k={top_k!r}")
        kwargs.pop("normalize_top_k", None)
        super().__init__(
            num_experts=num_experts,
            top_k=1,
            normalize_top_k=False,
            load_balancing_loss_weight=load_balancing_loss_weight,
            router_z_loss_weight=router_z_loss_weight,
            jitter_noise=jitter_noise,
            kernel_initializer=kernel_initializer,
            seed=seed,
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config.pop("top_k")
        config.pop("normalize_top_k")
        return config
