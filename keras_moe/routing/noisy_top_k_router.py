"""Noisy top-k gating (Shazeer et al. 2017, "Outrageously Large Neural Networks", section 2.1)."""

import math

import keras
from keras import ops

from keras_moe.losses import auxiliary
from keras_moe.routing.registry import register_router
from keras_moe.routing.router import TokenChoiceRouter
from keras_moe.routing.token_choice import TokenChoiceRouting
from keras_moe.utils.validation import check_non_negative_float


@register_router("noisy_top_k")
@keras.saving.register_keras_serializable(package="keras_moe")
class NoisyTopKRouter(TokenChoiceRouter):
    """Noisy top-k gating with a learned, per-token noise scale and the importance and load losses.

    `H(x) = x W_g + N(0, 1) * softplus(x W_noise)` (noise only when training);
    `G(x) = softmax(KeepTopK(H(x), k))`. The load loss uses the paper's smooth estimator
    `P(x, e) = Phi((x W_g - threshold) / softplus(x W_noise))` so that it has gradients.

    Args:
        num_experts: int `e`.
        top_k: int, experts per token; must be < `num_experts` (the load estimator needs the
            (k+1)-th value).
        importance_loss_weight: float, `w_importance` (paper: 0.1).
        load_loss_weight: float, `w_load` (paper: 0.1).
        noise_epsilon: float added to the noise scale for stability.
        router_z_loss_weight, jitter_noise, use_bias, kernel_initializer, seed: see `Router`.

    Example:

    ```python
    router = keras_moe.routing.NoisyTopKRouter(num_experts=4, top_k=2)
    routing = router(np.random.rand(6, 8).astype("float32"), training=True)
    assert tuple(routing.expert_index.shape) == (6, 2)
    ```
    """

    aux_loss_names = ("importance_loss", "load_loss", "router_z_loss")

    def __init__(
        self,
        num_experts,
        top_k=2,
        importance_loss_weight=0.1,
        load_loss_weight=0.1,
        noise_epsilon=1e-2,
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
        if top_k >= num_experts:
            raise ValueError(
                "`NoisyTopKRouter` needs `top_k < num_experts` for its load estimator. "
                f"Received: top_k={top_k}, num_experts={num_experts}"
            )
        self.importance_loss_weight = check_non_negative_float("importance_loss_weight", importance_loss_weight)
        self.load_loss_weight = check_non_negative_float("load_loss_weight", load_loss_weight)
        self.noise_epsilon = check_non_negative_float("noise_epsilon", noise_epsilon)

    def parameter_count(self, hidden_dim):
        return super().parameter_count(hidden_dim) + hidden_dim * self.num_experts  # + the noise kernel

    def build(self, input_shape):
        super().build(input_shape)
        self.noise_kernel = self.add_weight(
            name="noise_kernel", shape=(input_shape[-1], self.num_experts), initializer="zeros"
        )

    def route(self, tokens, clean_logits, mask, training, groups=None):
        noise_std = ops.softplus(ops.matmul(ops.cast(tokens, "float32"), self.noise_kernel)) + self.noise_epsilon
        if training:
            noise = keras.random.normal(ops.shape(clean_logits), seed=self.seed_generator)
            logits = clean_logits + noise * noise_std
        else:
            logits = clean_logits
        top_values, index = ops.top_k(logits, self.top_k + 1)  # [t, k+1]
        weight = ops.softmax(top_values[:, : self.top_k], axis=-1)
        index = ops.cast(index[:, : self.top_k], "int32")
        if mask is not None:
            weight = weight * mask[:, None]
        gates = ops.sum(ops.one_hot(index, self.num_experts, dtype="float32") * weight[:, :, None], axis=1)
        aux = {}
        if self.importance_loss_weight > 0:
            aux["importance_loss"] = self.importance_loss_weight * auxiliary.importance_loss(gates, mask)
        if self.load_loss_weight > 0 and training:
            # Threshold for an expert currently in the top k is the (k+1)-th value, else the k-th.
            threshold_if_in = top_values[:, self.top_k : self.top_k + 1]
            threshold_if_out = top_values[:, self.top_k - 1 : self.top_k]
            is_in = ops.greater(logits, threshold_if_in)
            normal_cdf = lambda z: 0.5 * (1.0 + ops.erf(z / math.sqrt(2.0)))  # noqa: E731
            prob_if_in = normal_cdf((clean_logits - threshold_if_in) / noise_std)
            prob_if_out = normal_cdf((clean_logits - threshold_if_out) / noise_std)
            load_probability = ops.where(is_in, prob_if_in, prob_if_out)
            aux["load_loss"] = self.load_loss_weight * auxiliary.load_loss(load_probability, mask)
        return TokenChoiceRouting(clean_logits, ops.softmax(logits, axis=-1), index, weight, aux)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "importance_loss_weight": self.importance_loss_weight,
                "load_loss_weight": self.load_loss_weight,
                "noise_epsilon": self.noise_epsilon,
            }
        )
        return config
