"""Capacity dispatch for token-choice routing (GShard, Lepikhin et al. 2020; Switch, Fedus et al. 2021).

Axis letters: `t` tokens, `k` choices per token, `e` experts, `c` capacity, `h` hidden.

Static shapes throughout (works under `jit_compile=True` and `jax.jit`): each expert gets a buffer
of `c` slots; token choices fill the slots in priority order (every token's first choice before any
second choice, then token order); choices past an expert's capacity are dropped, contributing
zero, so the token passes through the block's residual. Compute is `O(e c h f)`, and
`e c ~= capacity_factor * t * k`, so it follows `top_k`, not `num_experts`.
"""

import math

from keras import ops

from keras_moe.dispatch.gather import gather_rows


def expert_capacity(num_tokens, num_experts, top_k, capacity_factor, min_expert_capacity):
    """`c = min(t, max(min_expert_capacity, ceil(capacity_factor * t * k / e)))`.

    A Python int when `num_tokens` is one (static shapes), else an int32 tensor.
    """
    if isinstance(num_tokens, int):
        capacity = max(min_expert_capacity, math.ceil(capacity_factor * num_tokens * top_k / num_experts))
        return max(1, min(capacity, num_tokens))
    tokens = ops.cast(num_tokens, "float32")
    capacity = ops.cast(ops.ceil(capacity_factor * tokens * top_k / num_experts), "int32")
    return ops.maximum(ops.minimum(ops.maximum(capacity, min_expert_capacity), num_tokens), 1)


def capacity_slots(expert_index, num_experts, capacity, mask=None):
    """Assigns each (token, choice) a slot in its expert's buffer.

    Args:
        expert_index: int32 `[t, k]`.
        num_experts: int `e`.
        capacity: `c`.
        mask: optional `[t]`, 0 for padding; padding takes no slot.

    Returns:
        `(slot, kept)`: `slot` int32 `[t, k]` in `[0, e * c]`, where `e * c` is the overflow slot of
        dropped and padding choices; `kept` bool `[t, k]`.
    """
    num_tokens, top_k = ops.shape(expert_index)[0], ops.shape(expert_index)[1]
    index_kt = ops.reshape(ops.transpose(expert_index), (-1,))  # choice-major priority
    one_hot = ops.one_hot(index_kt, num_experts, dtype="int32")  # [k t, e]
    if mask is not None:
        valid_kt = ops.tile(ops.cast(ops.cast(ops.reshape(mask, (-1,)), "float32") > 0, "int32"), (top_k,))
        one_hot = one_hot * valid_kt[:, None]
    position = ops.sum((ops.cumsum(one_hot, axis=0) - 1) * one_hot, axis=-1)  # [k t]
    kept = ops.logical_and(ops.sum(one_hot, axis=-1) > 0, position < capacity)
    slot = ops.where(kept, index_kt * capacity + position, num_experts * capacity)
    slot = ops.transpose(ops.reshape(slot, (top_k, num_tokens)))
    kept = ops.transpose(ops.reshape(kept, (top_k, num_tokens)))
    return ops.cast(slot, "int32"), kept


def capacity_dispatch(tokens, expert_index, expert_weight, experts, capacity, mask=None):
    """Runs token-choice routing through fixed-size expert buffers.

    Args:
        tokens: `[t, h]`.
        expert_index: int32 `[t, k]`; expert_weight: float `[t, k]` combine weights.
        experts: an `ExpertBank` (`[e, c, h] -> [e, c, h]`).
        capacity: `c`.
        mask: optional `[t]`.

    Returns:
        `(outputs [t, h], kept bool [t, k])`.
    """
    num_tokens, hidden = ops.shape(tokens)[0], ops.shape(tokens)[1]
    num_experts = experts.num_experts
    slot, kept = capacity_slots(expert_index, num_experts, capacity, mask)
    top_k = ops.shape(expert_index)[1]
    num_slots = num_experts * capacity
    # Slot -> (token, choice) row table; +1 marks a filled slot. Empty slots read token 0 and are never combined.
    rows = ops.reshape(ops.arange(num_tokens * top_k, dtype="int32"), (num_tokens, top_k))
    table = ops.scatter(ops.reshape(slot, (-1, 1)), ops.reshape(rows + 1, (-1,)), (num_slots + 1,))[:-1]
    filled = table > 0
    row_of_slot = ops.maximum(table - 1, 0)
    expert_inputs = gather_rows(tokens, row_of_slot // top_k, ops.minimum(slot, num_slots - 1), kept)
    expert_outputs = experts.call_buffers(ops.reshape(expert_inputs, (num_experts, capacity, hidden)))
    expert_outputs = ops.reshape(expert_outputs, (num_slots, hidden))
    # Dropped choices read any slot and get weight 0.
    flat_slot = ops.reshape(ops.minimum(slot, num_slots - 1), (-1,))
    gathered = gather_rows(expert_outputs, flat_slot, row_of_slot[:, None], filled[:, None])
    gathered = ops.reshape(gathered, (num_tokens, top_k, hidden))
    weight = ops.cast(expert_weight * ops.cast(kept, expert_weight.dtype), gathered.dtype)
    return combine(gathered, weight), kept


def combine(gathered, weight):
    """`sum_k weight[t, k] * gathered[t, k, :]` as a broadcast multiply (an einsum here becomes t tiny matmuls)."""
    return ops.sum(gathered * weight[:, :, None], axis=1)
