"""Token-choice routing: each token picks `k` experts (Shazeer et al. 2017; GShard; Switch; Mixtral).

Axis letters: `t` tokens, `k` choices per token, `e` experts, `h` hidden.
"""

from typing import Any, NamedTuple

from keras import ops

from keras_moe import dispatch as dispatch_lib
from keras_moe.routing.common import DispatchResult, flat_tokens


def _run_capacity(tokens, index, weight, experts, options, mask):
    num_tokens = tokens.shape[0] if tokens.shape[0] is not None else ops.shape(tokens)[0]
    capacity = dispatch_lib.expert_capacity(
        num_tokens, experts.num_experts, index.shape[1], options.capacity_factor, options.min_expert_capacity
    )
    return dispatch_lib.capacity_dispatch(tokens, index, weight, experts, capacity, mask)


def _run_dropless(tokens, index, weight, experts, options, mask):
    return dispatch_lib.dropless_dispatch(tokens, index, weight, experts, mask)


# Dispatch modes of token-choice routing: `mode -> fn(tokens, index, weight, experts, options, mask)`
# returning `(outputs [t, h], kept bool [t, k])`.
DISPATCH_MODES = {"capacity": _run_capacity, "dropless": _run_dropless}


class TokenChoiceRouting(NamedTuple):
    """Each token's chosen experts and combine weights.

    Fields (float32 unless said): `router_logits [t, e]`; `router_probs [t, e]` (per-token
    probabilities over experts, for statistics and balancing losses); `expert_index` int32
    `[t, k]`; `expert_weight [t, k]` (combine weights, zero for padding tokens); `aux_losses`, a
    dict of weighted scalar losses, computed whether or not the model trains (the layer adds them
    to the model's losses only when training).
    """

    router_logits: Any
    router_probs: Any
    expert_index: Any
    expert_weight: Any
    aux_losses: dict

    @staticmethod
    def tokens(inputs, mask):
        return flat_tokens(inputs, mask)

    def dispatch(self, tokens, experts, options, mask=None):
        """Runs `experts` on each token's choices (`options.mode`: capacity or dropless)."""
        run = DISPATCH_MODES.get(options.mode)
        if run is None:
            raise ValueError(f"Unknown dispatch mode {options.mode!r}; token-choice modes: {sorted(DISPATCH_MODES)}")
        outputs, kept = run(tokens, self.expert_index, self.expert_weight, experts, options, mask)
        valid = ops.ones_like(self.expert_weight) if mask is None else ops.broadcast_to(mask[:, None], ops.shape(kept))
        routed = ops.one_hot(self.expert_index, experts.num_experts, dtype="float32") * valid[:, :, None]
        dropped = ops.sum(valid * (1.0 - ops.cast(kept, "float32")))
        return DispatchResult(outputs, ops.sum(routed, axis=(0, 1)), dropped, ops.sum(valid))

    def assignments(self, num_experts):
        return ops.sum(ops.one_hot(self.expert_index, num_experts, dtype="float32"), axis=1)

    def decisions(self):
        return self.expert_index, self.expert_weight


def top_k_choices(probs, top_k, normalize=True, mask=None):
    """`(expert_index int32 [t, k], expert_weight [t, k])`: the `top_k` most probable experts.

    `normalize`: `True` renormalises the chosen probabilities to sum to 1 when `top_k > 1` (with
    one choice the weight stays the probability, so the router keeps a gradient); `"always"`
    renormalises at `top_k = 1` too (weight 1, as Mixtral's and Qwen's `norm_topk_prob`);
    `False` keeps the probabilities (Switch, GShard). Padding tokens get weight 0.
    """
    weight, index = ops.top_k(probs, top_k)
    if normalize == "always" or (normalize and top_k > 1):
        weight = weight / ops.sum(weight, axis=-1, keepdims=True)
    if mask is not None:
        weight = weight * mask[:, None]
    return ops.cast(index, "int32"), weight
