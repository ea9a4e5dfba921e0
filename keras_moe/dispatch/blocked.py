"""Dropless dispatch with static shapes (MegaBlocks' block-sparse idea, Gale et al. 2023).

Axis letters: `t` tokens, `k` choices per token, `n = t k` rows, `e` experts, `B` block size,
`m` blocks, `P = m B` padded rows, `h` hidden.

(token, choice) rows are grouped by expert and each expert's group is padded to a multiple of
`B` rows, so every block of `B` rows belongs to one expert. The number of blocks is bounded
statically, `m = ceil((n + e (B - 1)) / B)`, whatever the routing: shapes never depend on the
data, so this path compiles under XLA (`jit_compile=True` on TensorFlow, `jax.jit`) where the
per-expert splits of `dropless_dispatch` cannot. No choice is ever dropped; padding rows compute
on zeros and are never read back. Compute is `P <= n + e (B - 1)` rows, not `e t`.
"""

import math

from keras import ops

from keras_moe.dispatch.capacity import combine
from keras_moe.dispatch.dropless import grouped_order
from keras_moe.dispatch.gather import gather_rows


def block_size_for(num_rows, num_experts):
    """A power of two in [8, 128] near `n / (2 e)`: padding at most about half the rows."""
    target = max(1, num_rows // (2 * num_experts))
    return int(min(128, max(8, 2 ** math.floor(math.log2(target)))))


def num_blocks(num_rows, num_experts, block_size):
    """The static bound on blocks: every expert's group rounded up to whole blocks."""
    return -(-(num_rows + num_experts * (block_size - 1)) // block_size)


def blocked_dispatch(tokens, expert_index, expert_weight, experts, mask=None, block_size=None):
    """Args as `dropless_dispatch`; `tokens` must have a static row count. Returns `(outputs [t, h], kept [t, k])`."""
    num_tokens, top_k = tokens.shape[0], expert_index.shape[1]
    if num_tokens is None:
        raise ValueError("blocked_dispatch needs a static number of tokens (it exists for static-shape compilation).")
    num_experts = experts.num_experts
    rows = num_tokens * top_k
    block_size = block_size or block_size_for(rows, num_experts)
    blocks = num_blocks(rows, num_experts, block_size)
    padded_rows = blocks * block_size

    flat_expert = ops.reshape(expert_index, (-1,))
    valid = None
    if mask is not None:
        valid = ops.repeat(ops.cast(ops.reshape(mask, (-1,)), "float32") > 0, top_k)
        flat_expert = ops.where(valid, flat_expert, num_experts)  # padding: a trailing group nobody computes
    destination, order, group_sizes = grouped_order(flat_expert, num_experts + 1)
    sizes = ops.cast(group_sizes[:num_experts], "int32")
    padded_sizes = (sizes + block_size - 1) // block_size * block_size
    starts = ops.cumsum(sizes) - sizes
    padded_ends = ops.cumsum(padded_sizes)
    padded_starts = padded_ends - padded_sizes

    # Row i of the grouped order goes to position padded_start[expert] + (i - start[expert]).
    sorted_expert = ops.take(flat_expert, order, axis=0)
    real = sorted_expert < num_experts
    safe_expert = ops.minimum(sorted_expert, num_experts - 1)
    grouped_position = ops.arange(rows, dtype="int32") - ops.take(starts, safe_expert)
    position = ops.where(real, ops.take(padded_starts, safe_expert) + grouped_position, padded_rows)  # [n] in sorted order
    row_position = ops.take(position, destination)  # [n] in token-major order

    sorted_inputs = gather_rows(tokens, order // top_k, ops.reshape(destination, (-1, top_k)))
    buffer = ops.zeros((padded_rows + 1, ops.shape(tokens)[1]), tokens.dtype)
    buffer = ops.scatter_update(buffer, position[:, None], sorted_inputs)[:padded_rows]
    block_expert = ops.minimum(
        ops.searchsorted(padded_ends, ops.arange(blocks, dtype="int32") * block_size, side="right"), num_experts - 1
    )
    block_outputs = experts.call_blocks(ops.reshape(buffer, (blocks, block_size, -1)), ops.cast(block_expert, "int32"))
    block_outputs = ops.concatenate([ops.reshape(block_outputs, (padded_rows, -1)), ops.zeros_like(block_outputs[0, :1])], 0)
    outputs = ops.take(block_outputs, row_position, axis=0)  # [n, h]; padding choices read the zero row
    outputs = ops.reshape(outputs, (num_tokens, top_k, -1))
    kept = ops.ones_like(expert_index, dtype="bool") if valid is None else ops.reshape(valid, ops.shape(expert_index))
    return combine(outputs, ops.cast(expert_weight, outputs.dtype)), kept
