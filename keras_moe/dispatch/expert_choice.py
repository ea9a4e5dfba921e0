"""Dispatch for expert-choice routing (Zhou et al. 2022): experts gather the tokens they picked.

Axis letters: `e` experts, `c` tokens per expert, `t` tokens, `h` hidden.
"""

from keras import ops


def expert_choice_dispatch(tokens, token_index, token_weight, experts):
    """Gathers `[e, c, h]`, runs the experts, scatters weighted outputs back to `[t, h]`.

    Args:
        tokens: `[t, h]`; token_index: int32 `[e, c]`; token_weight: float `[e, c]`.
        experts: an `ExpertBank`.

    Returns:
        `(outputs [t, h], times_chosen int32 [t])`.
    """
    num_tokens = ops.shape(tokens)[0]
    flat_index = ops.reshape(token_index, (-1,))
    expert_inputs = ops.reshape(ops.take(tokens, flat_index, axis=0), ops.shape(token_index) + (ops.shape(tokens)[1],))
    expert_outputs = experts.call_buffers(expert_inputs) * ops.cast(token_weight[:, :, None], tokens.dtype)
    outputs = ops.segment_sum(ops.reshape(expert_outputs, (-1, ops.shape(tokens)[1])), flat_index, num_segments=num_tokens)
    chosen = ops.segment_sum(ops.cast(ops.reshape(token_weight, (-1,)) > 0, "int32"), flat_index, num_segments=num_tokens)
    return outputs, chosen
