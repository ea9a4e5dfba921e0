"""Dispatch by gathering each choice's expert weights (few tokens: decoding steps, small batches).

Axis letters: `t` tokens, `k` choices per token, `h` hidden, `f` expert FFN.

Each (token, choice) reads its expert's kernels by index and runs one small matmul: no sorting,
splitting or padding, static shapes (XLA-friendly), no token dropped. The gathered kernels take
`t k h f` memory, so this path suits a handful of tokens, where grouping costs more than the maths.
"""

from keras import ops


def gathered_dispatch(tokens, expert_index, expert_weight, experts, mask=None):
    """Args as `dropless_dispatch`. Returns `(outputs [t, h], kept bool [t, k])`."""
    weight = expert_weight
    kept = ops.ones_like(expert_index, dtype="bool")
    if mask is not None:
        valid = ops.reshape(mask, (-1, 1)) > 0
        weight = weight * ops.cast(valid, weight.dtype)
        kept = ops.broadcast_to(valid, ops.shape(expert_index))
    return experts.call_gathered(tokens, expert_index, weight), kept
