"""Switch Transformer top-1 routing (Fedus et al. 2021, "Switch Transformers")."""

import keras

from keras_moe.routing.registry import register_router
from keras_moe.routing.top_k_router import TopKRouter


@register_router("switch")
@keras.saving.register_keras_serializable(package="keras_moe")
class SwitchRouter(TopKRouter):
    """Each token goes to its single most probable expert, scaled by that expert's probability.

    Capacity (the Switch paper's train and eval capacity factors) is applied by `MoELayer` in its
    `"capacity"` dispatch mode: `train_capacity_factor`, `eval_capacity_factor`,
    `min_expert_capacity`. Tokens past an expert's capacity skip the layer through the residual.

    Args:
        num_experts: int `e`.
        load_balancing_loss_weight: float, Switch's auxiliary loss weight (paper: 0.01).
        router_z_loss_weight, jitter_noise, use_bias, kernel_initializer, seed: see `Router`.

    Example:

    ```python
    router = keras_moe.routing.SwitchRouter(num_experts=4)
    assert tuple(router(np.random.rand(6, 8).astype("float32")).expert_index.shape) == (6, 1)
    ```
    """

    def __init__(
        self,
        num_experts,
        load_balancing_loss_weight=0.01,
        router_z_loss_weight=0.0,
        jitter_noise=0.0,
        use_bias=False,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        for fixed, value in (("top_k", 1), ("normalize_top_k", False)):
            given = kwargs.pop(fixed, value)
            if given != value or type(given) is not type(value):
                raise ValueError(
                    f"`SwitchRouter` fixes {fixed}={value!r} (one expert per token, weighted by its "
                    f"probability); use `TopKRouter` otherwise. Received: {fixed}={given!r}"
                )
        super().__init__(
            num_experts=num_experts,
            top_k=1,
            normalize_top_k=False,
            load_balancing_loss_weight=load_balancing_loss_weight,
            router_z_loss_weight=router_z_loss_weight,
            jitter_noise=jitter_noise,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            seed=seed,
            **kwargs,
        )

    def get_config(self):
        config = super().get_config()
        config.pop("top_k")
        config.pop("normalize_top_k")
        return config
