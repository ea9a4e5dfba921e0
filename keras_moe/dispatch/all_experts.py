"""Dispatch by running every expert on every token and keeping the chosen ones (a few tokens only).

Axis letters: `t` tokens, `k` choices per token, `e` experts, `h` hidden.

The outputs are exactly the chosen experts' (the others get weight 0), so nothing is dropped; the
compute is `e / k` times the sparse compute, in two batched matmuls with no sorting, splitting,
padding or gathering of weights. For a handful of tokens (decoding steps) fixed per-op costs
dominate and the expert weights sit in cache, so this is the fastest exact path on CPUs (measured:
`benchmarks/dispatch_choice.py`); at scale the wasted compute and weight reads make it the slowest.
"""

from keras import ops


def all_experts_dispatch(tokens, expert_index, expert_weight, experts, num_experts, mask=None):
    """Args as `dropless_dispatch`. Returns `(outputs [t, h], kept bool [t, k])`."""
    every = experts.call_every(tokens)  # [e, t, h]
    weights = ops.sum(ops.one_hot(expert_index, num_experts, dtype=every.dtype) * ops.cast(expert_weight, every.dtype)[:, :, None], axis=1)
    kept = ops.ones_like(expert_index, dtype="bool")
    if mask is not None:
        valid = ops.reshape(mask, (-1, 1)) > 0
        weights = weights * ops.cast(valid, weights.dtype)
        kept = ops.broadcast_to(valid, ops.shape(expert_index))
    return ops.sum(every * ops.transpose(weights)[:, :, None], axis=0), kept
