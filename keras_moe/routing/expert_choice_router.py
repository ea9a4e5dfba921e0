"""Expert-choice routing (Zhou et al. 2022, "Mixture-of-Experts with Expert Choice Routing").

Axis letters: `t` tokens, `e` experts, `c` tokens per expert, `h` hidden.
"""

import math
from typing import Any, NamedTuple

import keras
from keras import ops

from keras_moe import dispatch as dispatch_lib
from keras_moe.routing.common import DispatchResult, flat_tokens, valid_tokens
from keras_moe.routing.registry import register_router
from keras_moe.routing.router import Router
from keras_moe.utils.validation import check_positive_float, check_positive_int


class ExpertChoiceRouting(NamedTuple):
    """Each expert's chosen tokens.

    Fields: `router_logits`, `router_probs` float32 `[t, e]`; `token_index` int32 `[e, c]`;
    `token_weight` float32 `[e, c]` (zero where the slot holds padding); `aux_losses` dict.
    """

    router_logits: Any
    router_probs: Any
    token_index: Any
    token_weight: Any
    aux_losses: dict

    @staticmethod
    def tokens(inputs, mask):
        return flat_tokens(inputs, mask)

    def dispatch(self, tokens, experts, options=None, mask=None):
        """Experts gather their tokens; `options` are ignored (the router fixed the capacity)."""
        outputs, chosen = dispatch_lib.expert_choice_dispatch(tokens, self.token_index, self.token_weight, experts)
        valid = valid_tokens(mask, ops.shape(chosen)[0])
        counts = ops.sum(ops.cast(self.token_weight > 0, "float32"), axis=1)
        unpicked = ops.sum(ops.cast(chosen == 0, "float32") * valid)
        return DispatchResult(outputs, counts, unpicked, ops.sum(valid))

    def assignments(self, num_experts):
        """The most probable expert stands for the token (an expert's picks are not per token)."""
        return ops.one_hot(ops.argmax(self.router_probs, axis=-1), num_experts, dtype="float32")

    def decisions(self):
        weights, ids = ops.top_k(self.router_probs, 1)
        return ops.cast(ids, "int32"), weights


def expert_choice_capacity(num_tokens, num_experts, capacity_factor, min_expert_capacity=1):
    """Tokens each expert picks: `ceil(t * capacity_factor / e)`, at least `min_expert_capacity`, at most `t`."""
    if isinstance(num_tokens, int):
        capacity = max(min_expert_capacity, math.ceil(num_tokens * capacity_factor / num_experts))
        return min(capacity, num_tokens)
    capacity = ops.cast(ops.ceil(ops.cast(num_tokens, "float32") * capacity_factor / num_experts), "int32")
    return ops.minimum(ops.maximum(capacity, min_expert_capacity), num_tokens)


@register_router("expert_choice")
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
        router_z_loss_weight, jitter_noise, use_bias, kernel_initializer, seed: see `Router`.

    Example:

    ```python
    router = keras_moe.routing.ExpertChoiceRouter(num_experts=4, capacity_factor=2.0)
    assert tuple(router(np.random.rand(8, 16).astype("float32")).token_index.shape) == (4, 4)
    ```
    """

    routing_type = ExpertChoiceRouting

    def __init__(
        self,
        num_experts,
        capacity_factor=2.0,
        min_expert_capacity=1,
        router_z_loss_weight=0.0,
        jitter_noise=0.0,
        use_bias=False,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            num_experts=num_experts,
            jitter_noise=jitter_noise,
            router_z_loss_weight=router_z_loss_weight,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            seed=seed,
            **kwargs,
        )
        self.capacity_factor = check_positive_float("capacity_factor", capacity_factor)
        self.min_expert_capacity = check_positive_int("min_expert_capacity", min_expert_capacity)

    @property
    def experts_per_token(self):
        return self.capacity_factor

    def route(self, tokens, logits, mask, training, groups=None):
        probs = ops.softmax(logits, axis=-1)  # [t, e]
        num_tokens = tokens.shape[0] if tokens.shape[0] is not None else ops.shape(probs)[0]
        capacity = expert_choice_capacity(num_tokens, self.num_experts, self.capacity_factor, self.min_expert_capacity)
        scores = probs if mask is None else ops.where(mask[:, None] > 0, probs, -1.0)
        weight, index = ops.top_k(ops.transpose(scores), capacity)  # [e, c]
        weight = ops.maximum(weight, 0.0)  # padding slots (score -1) carry no weight
        return ExpertChoiceRouting(logits, probs, ops.cast(index, "int32"), weight, {})

    def get_config(self):
        config = super().get_config()
        config.update({"capacity_factor": self.capacity_factor, "min_expert_capacity": self.min_expert_capacity})
        return config
