"""LIMoE's per-modality entropy losses (Mustafa et al. 2022, "Multimodal Contrastive Learning with
LIMoE: the Language-Image Mixture of Experts", section 2.2), as pure `keras.ops` functions.

Axis letters: `t` tokens, `e` experts, `m` modalities.

For the tokens of one modality `m` with router probabilities `p_t` over experts:

- local entropy loss `Omega_local(m) = mean_t H(p_t)`: low when each token is confident about its
  experts (minimised: sharper routing per token);
- global entropy loss `Omega_global(m) = -H(mean_t p_t)`: low when the modality's tokens, taken
  together, spread over many experts (minimised: no modality collapses onto one expert). LIMoE
  applies it with a threshold `tau`: `max(0, tau + Omega_global(m))`, i.e. it stops pushing once
  the marginal entropy reaches `tau` (e.g. `log(n)`: "use at least about n experts").

Padding tokens (mask 0) count in neither. A modality without tokens in the batch contributes 0.
"""

import math

from keras import ops

_EPSILON = 1e-9


def _entropy(probs, axis=-1):
    probs = ops.cast(probs, "float32")
    return -ops.sum(probs * ops.log(probs + _EPSILON), axis=axis)


def _weights(num_tokens, mask):
    if mask is None:
        return ops.ones((num_tokens,), "float32")
    return ops.cast(ops.reshape(mask, (-1,)), "float32")


def local_entropy_loss(router_probs, mask=None):
    """`mean_t H(p_t)` over valid tokens (nats); `router_probs` float `[t, e]`, `mask` optional `[t]`."""
    weights = _weights(ops.shape(router_probs)[0], mask)
    return ops.sum(_entropy(router_probs) * weights) / ops.maximum(ops.sum(weights), 1.0)


def global_entropy_loss(router_probs, mask=None, threshold=None):
    """`-H(mean_t p_t)` over valid tokens, or `max(0, threshold - H(mean_t p_t))` with a threshold.

    Zero when no token is valid (with or without threshold).
    """
    weights = _weights(ops.shape(router_probs)[0], mask)
    count = ops.sum(weights)
    marginal = ops.sum(ops.cast(router_probs, "float32") * weights[:, None], axis=0) / ops.maximum(count, 1.0)
    loss = -_entropy(marginal)
    if threshold is not None:
        loss = ops.maximum(0.0, float(threshold) + loss)
    return ops.where(count > 0, loss, 0.0)


def modality_entropy_losses(router_probs, modality_ids, num_modalities, mask=None, threshold=None):
    """Per modality `m`: `(local [m], global [m])` entropy losses over that modality's valid tokens.

    Args:
        router_probs: float `[t, e]`.
        modality_ids: int `[t]`, values in `[0, num_modalities)`.
        num_modalities: int.
        mask: optional `[t]` (padding 0).
        threshold: optional float `tau` for the global loss (see the module docstring).
    """
    modality_ids = ops.reshape(modality_ids, (-1,))
    weights = _weights(ops.shape(router_probs)[0], mask)
    local, global_ = [], []
    for m in range(num_modalities):
        modality_mask = weights * ops.cast(ops.equal(modality_ids, m), "float32")
        local.append(local_entropy_loss(router_probs, modality_mask))
        global_.append(global_entropy_loss(router_probs, modality_mask, threshold))
    return ops.stack(local), ops.stack(global_)


def entropy_threshold(num_experts):
    """`log(num_experts)`: the largest marginal entropy, LIMoE's threshold for "use all experts"."""
    return math.log(num_experts)
