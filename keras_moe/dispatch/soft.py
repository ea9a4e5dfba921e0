"""Dispatch for Soft MoE (Puigcerver et al. 2023): slots are weighted averages of tokens.

Axis letters: `b` batch, `s` sequence, `n` slots (`e p`), `e` experts, `p` slots per expert, `h` hidden.
"""

from keras import ops


def soft_dispatch(tokens, dispatch_weights, combine_weights, experts, num_slots):
    """`tokens [b, s, h]`, weights `[b, s, n]` -> outputs `[b, s, h]`."""
    batch, hidden = ops.shape(tokens)[0], ops.shape(tokens)[2]
    num_experts = experts.num_experts
    dispatch_weights = ops.cast(dispatch_weights, tokens.dtype)
    slots = ops.einsum("bsn,bsh->bnh", dispatch_weights, tokens)
    slots = ops.reshape(slots, (batch, num_experts, num_slots, hidden))
    slots = ops.reshape(ops.transpose(slots, (1, 0, 2, 3)), (num_experts, -1, hidden))  # [e, b p, h]
    slot_outputs = experts.call_buffers(slots)
    slot_outputs = ops.reshape(slot_outputs, (num_experts, batch, num_slots, hidden))
    slot_outputs = ops.reshape(ops.transpose(slot_outputs, (1, 0, 2, 3)), (batch, num_experts * num_slots, hidden))
    return ops.einsum("bsn,bnh->bsh", ops.cast(combine_weights, tokens.dtype), slot_outputs)
