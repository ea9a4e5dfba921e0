"""Expert-choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing")."""

import math

import keras
from keras import ops

from keras_moe.routing.router import Router
from keras_moe.routing.routing_result import RoutingResult
from keras_moe.utils.validation import check_positive_float, check_positive_int


def expert_choice_capacity(num_tokens, num_experts, capacity_factor, min_expert_capacity=1):
    """Tokens each expert picks: `ceil(t * capacity_factor / e)`, at least `min_expert_capacity`, at most `t`."""
    if isinstance(num_tokens, int):
        capacity = max(min_expert_capacity, math.ceil(num_tokens * capacity_factor / num_experts))
        return min(capacity, num_tokens)
    capacity = ops.cast(ops.ceil(ops.cast(num_tokens, "float32") * capacity_factor / num_experts), "int32")
    return ops.minimum(ops.maximum(capacity, min_expert_capacity), num_tokens)


@keras.saving.register_keras_serializable(package="keras_moe")
class ExpertChoiceRouter(Router):
    """Each expert picks its `capacity` highest-scoring tokens; load is balanced by construction.

    Scores are the token-wise softmax over experts, `S = softmax(X W)` `[t, e]`; expert `e` takes the
    top `c = ceil(t * capacity_factor / e)` tokens of `S[:, e]` and weighs them by `S`. A token may be
    picked by several experts or by none (it then skips the layer through the residual).
    `capacity_factor` is the paper's `c`: the average number of experts per token.

    Args:
        num_experts: int `e`.
        capacity_factor: float > 0, average experts per token (paper: 2).
        min_expert_capacity: int, lower bound on tokens per expert.
        router_z_loss_weight, jitter_noise, kernel_initializer, seed: see `Router`.

    Example:
    >>> router = ExpertChoiceRouter(num_experts=4, capacity_factor=2.0)
    >>> router(np.random.rand(8, 16).astype("float32")).token_index.shape
    TensorShape([4, 4])
    """

    kind = "expert_choice"

    def __init__(
        self,
        num_experts,
        capacity_factor=2.0,
        min_expert_capacity=1,
        router_z_loss_weight=0.0,
        jitter_noise=0.0,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            num_experts=num_experts,
            top_k=1,
            jitter_noise=jitter_noise,
            router_z_loss_weight=router_z_loss_weight,
            kernel_initializer=kernel_initializer,
            seed=seed,
            **kwargs,
        )
        self.capacity_factor = check_positive_float("capacity_factor", capacity_factor)
        self.min_expert_capacity = check_positive_int("min_expert_capacity", min_expert_capacity)

    @property
    def experts_per_token(self):
        return self.capacity_factor

    def route(self, tokens, logits, mask, training):
        probs = ops.softmax(logits, axis=-1)  # [t, e]
        num_tokens = ops.shape(probs)[0]
        capacity = expert_choice_capacity(num_tokens, self.num_experts, self.capacity_factor, self.min_expert_capacity)
        scores = probs if mask is None else ops.where(mask[:, None] > 0, probs, -1.0)
        weight, index = ops.top_k(ops.transpose(scores), capacity)  # [e, c]
        weight = ops.maximum(weight, 0.0)  # padding slots (score -1) carry no weight
        return RoutingResult(
            kind="expert_choice",
            router_probs=probs,
            token_index=ops.cast(index, "int32"),
            token_weight=weight,
        )

    def get_config(self):
        config = super().get_config()
        config.pop("top_k")
        config.update({"capacity_factor": self.capacity_factor, "min_expert_capacity": self.min_expert_capacity})
        return config
