"""What every routing family shares: dispatch options and results, token groups, aux-loss updates.

Axis letters: `t` tokens, `e` experts, `m` token groups (e.g. modalities).

A routing family is one immutable `NamedTuple` type (`TokenChoiceRouting`, `ExpertChoiceRouting`,
`SoftRouting`), as flaxformer's `RouterIndices`/`RouterMask`. Each type owns its dispatch and its
statistics through the same four members, so `MoELayer` never asks which family it holds:

- `tokens(inputs, mask)` (static): the token layout the family routes (`[t, h]`, or `[b, s, h]`);
- `dispatch(tokens, experts, options, mask)` -> `DispatchResult`;
- `assignments(num_experts)` -> float32 `[t, e]`, the routed assignments of each token;
- `decisions()` -> `(expert_ids [t, k], expert_weights [t, k])`, what the `routing` outputs report.

A new family is one new file: its type, its router(s), registered by name.
"""

from typing import Any, NamedTuple

from keras import ops

MASKED_LOGIT = -1e9


class DispatchOptions(NamedTuple):
    """How a layer wants token-choice routing dispatched (other families ignore it).

    `mode`: a key of `token_choice.DISPATCH_MODES` (`"capacity"`, `"auto"`, `"dropless"`, ...);
    `capacity_factor` and `min_expert_capacity` size the
    expert buffers in capacity mode (the layer picks the train or eval factor); `training`: whether
    the call trains (blocked dispatch skips its unused padding blocks only at inference).
    """

    mode: str = "capacity"
    capacity_factor: float = 1.25
    min_expert_capacity: int = 4
    training: bool = False


class DispatchResult(NamedTuple):
    """Expert outputs combined back into token order, and the batch totals the statistics need.

    `outputs`: in the family's token layout. `expert_counts` float32 `[e]`: routed assignments of
    valid tokens per expert. `dropped`: assignments dropped for lack of capacity (expert choice:
    valid tokens no expert picked). `assignments`: the count `dropped` is a share of.
    """

    outputs: Any
    expert_counts: Any
    dropped: Any
    assignments: Any


class TokenGroups(NamedTuple):
    """Tokens in groups (e.g. modalities) that may each use only some experts.

    `ids`: int32 `[t]`, each token's group. `allowed`: float32 `[m, e]`, 1 where group `m` may
    use expert `e`. Routers mask the logits of the other experts (`logit_mask`) and balance the
    load within each group (`keras_moe.losses.auxiliary.load_balancing_loss(groups=...)`).
    """

    ids: Any
    allowed: Any

    def logit_mask(self):
        """float32 `[t, e]`: 1 where a token may use an expert."""
        return ops.take(self.allowed, self.ids, axis=0)


def flat_tokens(inputs, mask):
    """`[..., h] -> [t, h]` and the mask to float32 `[t]` (or None)."""
    tokens = ops.reshape(inputs, (-1, inputs.shape[-1]))
    return tokens, None if mask is None else ops.reshape(ops.cast(mask, "float32"), (-1,))


def valid_tokens(mask, num_tokens):
    """float32 `[t]`: the mask, or ones."""
    return ops.ones((num_tokens,), "float32") if mask is None else ops.reshape(ops.cast(mask, "float32"), (-1,))


def with_aux_losses(routing, **losses):
    """A copy of `routing` whose `aux_losses` also hold `losses` (routings are never mutated)."""
    return routing._replace(aux_losses={**routing.aux_losses, **losses})
