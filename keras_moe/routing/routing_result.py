"""The one data object every router returns and every MoE layer consumes."""

import dataclasses
from typing import Any, Optional


@dataclasses.dataclass
class RoutingResult:
    """Routing instructions for one batch of tokens (flaxformer's `RouterIndices`/`RouterMask`).

    Exactly one of three forms is filled, named by `kind`:

    - `"token_choice"`: each token picks experts. `expert_index` int32 `[t, k]`, `expert_weight`
      float32 `[t, k]` (combine weights; zero for padding tokens).
    - `"expert_choice"`: each expert picks tokens. `token_index` int32 `[e, c]`, `token_weight`
      float32 `[e, c]` (zero where the slot holds padding).
    - `"soft"`: Soft MoE slots. `dispatch_weights` and `combine_weights` float32 `[b, s, n]`
      with `n = num_experts * num_slots`.

    Always: `router_probs` float32 `[t, e]` (per-token probabilities over experts, for statistics),
    and `aux_losses`, a dict of already-weighted scalar losses (empty when not training).
    """

    kind: str
    router_probs: Any
    expert_index: Optional[Any] = None
    expert_weight: Optional[Any] = None
    token_index: Optional[Any] = None
    token_weight: Optional[Any] = None
    dispatch_weights: Optional[Any] = None
    combine_weights: Optional[Any] = None
    aux_losses: dict = dataclasses.field(default_factory=dict)
