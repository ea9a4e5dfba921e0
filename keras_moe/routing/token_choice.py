"""Token-choice routing: each token picks `k` experts (Shazeer et al. 2017; GShard; Switch; Mixtral).

Axis letters: `t` tokens, `k` choices per token, `e` experts, `h` hidden.
"""

from typing import Any, NamedTuple

from keras import ops

from keras_moe import dispatch as dispatch_lib
from keras_moe.losses import auxiliary
from keras_moe.routing.common import DispatchResult, flat_tokens


def _run_capacity(tokens, index, weight, experts, options, mask):
    num_tokens = tokens.shape[0] if tokens.shape[0] is not None else ops.shape(tokens)[0]
    capacity = dispatch_lib.expert_capacity(
        num_tokens, experts.num_experts, index.shape[1], options.capacity_factor, options.min_expert_capacity
    )
    return dispatch_lib.capacity_dispatch(tokens, index, weight, experts, capacity, mask)


def _run_dropless(tokens, index, weight, experts, options, mask):
    if dispatch_lib.in_xla_compilation() and tokens.shape[0] is not None:
        # TensorFlow's per-expert splits have data-dependent sizes, which XLA cannot compile; the
        # blocked path is dropless too, with static shapes (keras_moe/dispatch/blocked.py).
        return _run_blocked(tokens, index, weight, experts, options, mask)
    return dispatch_lib.dropless_dispatch(tokens, index, weight, experts, mask)


def _run_blocked(tokens, index, weight, experts, options, mask):
    return dispatch_lib.blocked_dispatch(tokens, index, weight, experts, mask, skip_unused=not options.training)


def _run_gathered(tokens, index, weight, experts, options, mask):
    return dispatch_lib.gathered_dispatch(tokens, index, weight, experts, mask)


def _run_all_experts(tokens, index, weight, experts, options, mask):
    return dispatch_lib.all_experts_dispatch(tokens, index, weight, experts, experts.num_experts, mask)


def _run_auto(tokens, index, weight, experts, options, mask):
    xla = dispatch_lib.in_xla_compilation()
    mode = dispatch_lib.auto_mode(tokens.shape[0], index.shape[1], experts.num_experts, xla=xla)
    if tokens.shape[0] is None and not options.training:
        # The token count is known only at run time (a SavedModel signature's dynamic batch): a
        # decoding step of one token still takes the one-token mode, chosen in the graph.
        # Inference only: a training graph keeps one path (a `cond` there changed gradients
        # under MirroredStrategy beyond the single-device tolerance, 2e-4 against 1e-5).
        single = dispatch_lib.auto_mode(1, index.shape[1], experts.num_experts, xla=xla)
        if single != mode:
            def run(name):
                return lambda: DISPATCH_MODES[name](tokens, index, weight, experts, options, mask)

            return ops.cond(ops.equal(ops.shape(tokens)[0], 1), run(single), run(mode))
    return DISPATCH_MODES[mode](tokens, index, weight, experts, options, mask)


# Dispatch modes of token-choice routing: `mode -> fn(tokens, index, weight, experts, options, mask)`
# returning `(outputs [t, h], kept bool [t, k])`. All but "capacity" are exact (no choice dropped).
DISPATCH_MODES = {"capacity": _run_capacity, "dropless": _run_dropless, "blocked": _run_blocked, "gathered": _run_gathered,
                  "all_experts": _run_all_experts, "auto": _run_auto}


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
    renormalises at `top_k = 1` too (weight exactly 1 and no gradient to the router through it, as
    Mixtral's and Qwen's `norm_topk_prob`); `"straight_through"` renormalises too, but at `top_k = 1`
    the weight is `p / stop_gradient(p)`: exactly 1 forward, the probability's gradient backward
    (what sparse upcycling with one expert per token needs: the dense model's outputs at
    initialisation, and a router that learns); `False` keeps the probabilities (Switch, GShard).
    Padding tokens get weight 0.
    """
    weight, index = ops.top_k(probs, top_k)
    if normalize == "straight_through" and top_k == 1:
        weight = weight / ops.stop_gradient(weight)
    elif normalize in ("always", "straight_through") or (normalize and top_k > 1):
        weight = weight / ops.sum(weight, axis=-1, keepdims=True)
    if mask is not None:
        weight = weight * mask[:, None]
    return ops.cast(index, "int32"), weight


def softmax_top_k_routing(logits, top_k, normalize=True, mask=None, load_balancing_loss_weight=0.0, groups=None):
    """The softmax top-k rule (`TopKRouter`, Mixtral, Qwen-MoE, GPT-OSS, Gemma 4): `TokenChoiceRouting`.

    Args:
        logits: float32 `[t, e]` router logits.
        top_k: int. normalize: see `top_k_choices`. mask: optional float `[t]`.
        load_balancing_loss_weight: float; > 0 adds the weighted Switch/GShard loss to `aux_losses`.
        groups: optional `TokenGroups` for the per-group load-balancing loss.
    """
    probs = ops.softmax(logits, axis=-1)  # [t, e]
    if normalize == "always" or (normalize is True and top_k > 1):
        # The renormalised top-k probabilities are the softmax of the top-k logits: two ops fewer
        # per layer (a decoding step pays per op), and `probs` is only computed if a loss or
        # statistic reads it.
        top_logits, index = ops.top_k(logits, top_k)
        weight = ops.softmax(top_logits, axis=-1) if top_k > 1 else ops.ones_like(top_logits)
        index = ops.cast(index, "int32")
        if mask is not None:
            weight = weight * mask[:, None]
    else:
        index, weight = top_k_choices(probs, top_k, normalize, mask)
    aux = {}
    if load_balancing_loss_weight > 0:
        aux["load_balancing_loss"] = load_balancing_loss_weight * auxiliary.load_balancing_loss(probs, index, mask, groups)
    return TokenChoiceRouting(logits, probs, index, weight, aux)
