"""Auxiliary routing losses and statistics as pure `keras.ops` functions.

Axis letters (used in every module of keras-moe): `t` tokens, `e` experts, `k` choices per token.

Every function takes an optional `mask` of shape `[t]` (1 for real tokens, 0 for padding); padding
tokens count in no statistic. All math is float32. The layers multiply these values by their
`*_loss_weight` constructor arguments and add them with `add_loss` only when training.

Under a `tf.distribute` strategy every sum over tokens is a sum over the *global* batch
(`cross_replica_sum`), so each replica computes the single-device value of these nonlinear losses
and their gradients match one device (tested against a single-device run on 2 replicas).
"""

from keras import ops

from keras_moe.distribution.replicas import cross_replica_sum

_EPSILON = 1e-9


def _token_mask(mask, num_tokens):
    if mask is None:
        return ops.ones((num_tokens,), "float32")
    return ops.cast(ops.reshape(mask, (-1,)), "float32")


def _masked_mean(values_te, mask_t):
    """Mean over valid tokens of `[t, e]` values: `[e]`."""
    total = cross_replica_sum(ops.sum(values_te * mask_t[:, None], axis=0))
    return total / ops.maximum(_global_count(mask_t), 1.0)


def _global_count(mask_t):
    """Valid tokens in the global batch (all replicas)."""
    return cross_replica_sum(ops.sum(mask_t))


def expert_assignment_fraction(expert_index, num_experts, mask=None):
    """Fraction of (token, choice) assignments that go to each expert.

    Args:
        expert_index: int `[t, k]` chosen experts.
        num_experts: `e`.
        mask: optional `[t]`.

    Returns:
        float32 `[e]` summing to 1 over valid tokens (all zeros when no token is valid).
    """
    mask_t = _token_mask(mask, ops.shape(expert_index)[0])
    one_hot = ops.sum(ops.one_hot(expert_index, num_experts, dtype="float32"), axis=1)  # [t, e]
    counts = cross_replica_sum(ops.sum(one_hot * mask_t[:, None], axis=0))
    return counts / ops.maximum(ops.sum(counts), 1.0)


def load_balancing_loss(router_probs, expert_index, mask=None, groups=None):
    """Switch Transformer / GShard load-balancing loss: `e * sum_e f_e * P_e`.

    `f_e` is the fraction of token assignments routed to expert `e` and `P_e` the mean router
    probability of `e`. Equals 1.0 under perfectly uniform routing (Fedus et al. 2021, eq. 4;
    Lepikhin et al. 2020, GShard).

    With `groups` (a `keras_moe.routing.TokenGroups`: tokens in groups, e.g. modalities, that may
    each use only some experts), the loss balances each group over its own experts and averages
    the groups: `mean_m n_m * sum_{e usable by m} f_{m,e} P_{m,e}`, with `f` and `P` taken over
    group `m`'s tokens and `n_m` its number of usable experts. The global loss cannot be balanced
    when the groups have different token counts and disjoint experts.

    Args:
        router_probs: float `[t, e]` softmax probabilities.
        expert_index: int `[t, k]` chosen experts.
        mask: optional `[t]`.
        groups: optional `TokenGroups` (`ids [t]`, `allowed [m, e]`).
    """
    router_probs = ops.cast(router_probs, "float32")
    num_experts = ops.shape(router_probs)[-1]
    mask_t = _token_mask(mask, ops.shape(router_probs)[0])
    if groups is None:
        fraction = expert_assignment_fraction(expert_index, num_experts, mask_t)
        mean_prob = _masked_mean(router_probs, mask_t)
        return ops.cast(num_experts, "float32") * ops.sum(fraction * mean_prob)
    allowed = ops.cast(groups.allowed, "float32")  # [m, e]
    num_groups = allowed.shape[0]
    routed = ops.sum(ops.one_hot(expert_index, num_experts, dtype="float32"), axis=1)  # [t, e]
    member = ops.one_hot(ops.cast(groups.ids, "int32"), num_groups, dtype="float32") * mask_t[:, None]  # [t, m]
    counts = cross_replica_sum(ops.einsum("tm,te->me", member, routed))
    prob_sums = cross_replica_sum(ops.einsum("tm,te->me", member, router_probs))
    tokens = cross_replica_sum(ops.sum(member, axis=0))  # [m]
    fraction = counts / ops.maximum(ops.sum(counts, axis=1, keepdims=True), 1.0)
    mean_prob = prob_sums / ops.maximum(tokens[:, None], 1.0)
    per_group = ops.sum(allowed, axis=1) * ops.sum(fraction * mean_prob * allowed, axis=1)
    return ops.mean(per_group)


def coefficient_of_variation_squared(values):
    """`(std / mean)^2` of a vector, as used by Shazeer et al. 2017 (population variance)."""
    values = ops.cast(values, "float32")
    mean = ops.mean(values)
    variance = ops.mean(ops.square(values - mean))
    return variance / (ops.square(mean) + _EPSILON)


def importance_loss(gates, mask=None):
    """Importance loss `CV(sum_t gates)^2` (Shazeer et al. 2017, "Outrageously large neural networks", eq. 6).

    Args:
        gates: float `[t, e]` gate values (zeros for experts not chosen).
        mask: optional `[t]`.
    """
    mask_t = _token_mask(mask, ops.shape(gates)[0])
    importance = cross_replica_sum(ops.sum(ops.cast(gates, "float32") * mask_t[:, None], axis=0))
    return coefficient_of_variation_squared(importance)


def load_loss(load_probability, mask=None):
    """Load loss `CV(sum_t P(t, e))^2` on the smooth load estimator of noisy top-k gating.

    `load_probability[t, e]` is the probability that expert `e` would still be in token `t`'s top k
    if the noise were re-sampled (Shazeer et al. 2017, appendix A, eqs. 8-11).
    """
    mask_t = _token_mask(mask, ops.shape(load_probability)[0])
    load = cross_replica_sum(ops.sum(ops.cast(load_probability, "float32") * mask_t[:, None], axis=0))
    return coefficient_of_variation_squared(load)


def router_z_loss(router_logits, mask=None):
    """Router z-loss: mean over tokens of `logsumexp(logits)^2` (Zoph et al. 2022, ST-MoE, eq. 5)."""
    router_logits = ops.cast(router_logits, "float32")
    mask_t = _token_mask(mask, ops.shape(router_logits)[0])
    z = ops.logsumexp(router_logits, axis=-1)
    return cross_replica_sum(ops.sum(ops.square(z) * mask_t)) / ops.maximum(_global_count(mask_t), 1.0)


def router_entropy(router_probs, mask=None):
    """Mean over tokens of the entropy of the router distribution, in nats.

    `log(e)` for a uniform router, 0 for a one-hot router. Used as a diagnostic and, negated, as
    the LIMoE-style entropy regulariser.
    """
    router_probs = ops.cast(router_probs, "float32")
    mask_t = _token_mask(mask, ops.shape(router_probs)[0])
    entropy = -ops.sum(router_probs * ops.log(router_probs + _EPSILON), axis=-1)
    return cross_replica_sum(ops.sum(entropy * mask_t)) / ops.maximum(_global_count(mask_t), 1.0)
