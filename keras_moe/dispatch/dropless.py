"""Dropless dispatch for token-choice routing (MegaBlocks, Gale et al. 2023): no token is ever dropped.

Axis letters: `t` tokens, `k` choices per token, `n = t k` sorted rows, `e` experts, `h` hidden.

(token, choice) rows are sorted by expert and run through `grouped_matmul` with the exact group
sizes: compute is `O(t k h f)`, never padded, never dropped. Padding tokens are sorted into a
trailing group that no expert computes.
"""

from keras import ops

from keras_moe.dispatch.capacity import combine


def dropless_dispatch(tokens, expert_index, expert_weight, experts, mask=None):
    """Args as `capacity_dispatch`, without capacity. Returns `(outputs [t, h], kept bool [t, k])`."""
    num_experts = experts.num_experts
    top_k = ops.shape(expert_index)[1]
    flat_expert = ops.reshape(expert_index, (-1,))  # [n], token-major
    if mask is not None:
        valid = ops.repeat(ops.cast(ops.reshape(mask, (-1,)), "float32") > 0, top_k)
        flat_expert = ops.where(valid, flat_expert, num_experts)
    order = ops.argsort(flat_expert)
    ones = ops.ones_like(flat_expert)
    group_sizes = ops.segment_sum(ones, flat_expert, num_segments=num_experts + 1)[:num_experts]
    sorted_inputs = ops.take(tokens, order // top_k, axis=0)
    sorted_outputs = experts.call_grouped(sorted_inputs, ops.cast(group_sizes, "int32"))
    outputs = ops.take(sorted_outputs, ops.argsort(order), axis=0)  # back to token-major [n, h]
    outputs = ops.reshape(outputs, (-1, top_k, ops.shape(tokens)[1]))
    kept = ops.ones_like(expert_index, dtype="bool") if mask is None else ops.reshape(valid, ops.shape(expert_index))
    return combine(outputs, ops.cast(expert_weight, outputs.dtype)), kept
