"""An MoE layer that knows each token's modality: modality-restricted experts and LIMoE losses.

Axis letters: `t` tokens, `e` experts, `m` modalities, `h` hidden.

Two uses (both take `modality_ids` per token in `call`):

- **LIMoE** (Mustafa et al. 2022): learned routing over all experts (`expert_modalities=None`), with
  the per-modality local and global entropy losses of `keras_moe.losses.limoe`.
- **Modality experts** (e.g. VLMo's modality experts, Bao et al. 2022; BEiT-3): each expert is
  tagged with the one modality it serves (or `-1`, any modality). The router routes with the
  modalities as `TokenGroups`: the logits of other modalities' experts are masked before routing
  (a text token never reaches an image expert), and the load-balancing loss balances each modality
  over its own experts. Always-on shared experts come from `num_shared_experts` (DeepSeekMoE style).

Everything else is `MoELayer`'s: the same call path, dispatch and statistics. Per-modality routing
counts (`modality_stats`, `[m, e]` assignments) feed the routing analysis (`keras_moe.analysis`)
and the `{name}_modality_purity` metric that `fit` logs.
"""

import keras
from keras import ops

from keras_moe.layers.moe_layer import MoELayer
from keras_moe.losses import limoe
from keras_moe.metrics.modality_routing_stats import ModalityRoutingStats
from keras_moe.metrics.routing_stats import stats_are_writable
from keras_moe.routing.common import TokenGroups, valid_tokens, with_aux_losses
from keras_moe.routing.token_choice import TokenChoiceRouting
from keras_moe.utils.validation import check_non_negative_float, check_positive_int

LIMOE_LOSSES = ("local_entropy_loss", "global_entropy_loss")


@keras.saving.register_keras_serializable(package="keras_moe")
class ModalityMoELayer(MoELayer):
    """`MoELayer` whose routing sees each token's modality id.

    Args:
        num_experts, intermediate_dim, router, ...: see `MoELayer`. Use `dispatch="dropless"` with
            restricted experts: modalities with more tokens than others would overflow a uniform capacity.
        num_modalities: int >= 1 (the multimodal models use 0 = text, 1 = image).
        expert_modalities: None (learned routing over every expert) or a list of `num_experts`
            ints: the modality each expert serves, or -1 for any. Every modality needs at least
            `top_k` experts it may use.
        local_entropy_loss_weight: float >= 0, LIMoE local entropy loss weight (summed over modalities).
        global_entropy_loss_weight: float >= 0, LIMoE global entropy loss weight (summed over modalities).
        global_entropy_threshold: float or None, LIMoE's `tau` for the global loss (None: no threshold).

    Call args:
        inputs: `[b, s, h]` or `[t, h]`.
        modality_ids: int `[b, s]` / `[t]` (None: every token is modality 0).
        mask, training, router_inputs, return_routing: see `MoELayer`.

    Example:

    ```python
    layer = keras_moe.layers.ModalityMoELayer(
        4, 16, router={"class_name": "top_k", "config": {"top_k": 1}},
        expert_modalities=[0, 0, 1, 1], dispatch="dropless")
    outputs = layer(np.ones((2, 3, 8), "float32"), modality_ids=np.array([[0, 1, 1], [0, 0, 1]]))
    assert tuple(outputs.shape) == (2, 3, 8)
    ```
    """

    def __init__(
        self,
        num_experts,
        intermediate_dim,
        num_modalities=2,
        expert_modalities=None,
        local_entropy_loss_weight=0.0,
        global_entropy_loss_weight=0.0,
        global_entropy_threshold=None,
        **kwargs,
    ):
        self.num_modalities = check_positive_int("num_modalities", num_modalities)
        self.local_entropy_loss_weight = check_non_negative_float("local_entropy_loss_weight", local_entropy_loss_weight)
        self.global_entropy_loss_weight = check_non_negative_float("global_entropy_loss_weight", global_entropy_loss_weight)
        super().__init__(num_experts, intermediate_dim, **kwargs)
        if expert_modalities is not None:
            expert_modalities = [int(m) for m in expert_modalities]
            if len(expert_modalities) != num_experts or any(m < -1 or m >= num_modalities for m in expert_modalities):
                raise ValueError(
                    f"`expert_modalities` must list {num_experts} modality ids in [-1, {num_modalities}) "
                    f"(-1: any modality). Received: expert_modalities={expert_modalities}"
                )
            if self.router.routing_type is not TokenChoiceRouting:
                raise ValueError(f"Modality-restricted experts need a token-choice router. Received: router={self.router.name!r}")
            for m in range(num_modalities):
                usable = sum(1 for e in expert_modalities if e in (m, -1))
                if usable < self.router.top_k:
                    raise ValueError(
                        f"Modality {m} may use {usable} experts, fewer than top_k={self.router.top_k}. "
                        f"Received: expert_modalities={expert_modalities}"
                    )
        self.expert_modalities = expert_modalities
        if global_entropy_threshold is not None:
            global_entropy_threshold = check_non_negative_float("global_entropy_threshold", global_entropy_threshold)
        self.global_entropy_threshold = global_entropy_threshold
        self.modality_stats = ModalityRoutingStats(num_modalities, num_experts, name=self.name)

    @property
    def aux_loss_names(self):
        extra = tuple(name for name in LIMOE_LOSSES if getattr(self, f"{name}_weight") > 0)
        return tuple(self.router.aux_loss_names) + extra

    def allowed_experts(self):
        """float32 `[m, e]`: 1 where modality `m` may use expert `e`."""
        if self.expert_modalities is None:
            return ops.ones((self.num_modalities, self.num_experts), "float32")
        table = [[1.0 if e in (m, -1) else 0.0 for e in self.expert_modalities] for m in range(self.num_modalities)]
        return ops.convert_to_tensor(table, "float32")

    def call(self, inputs, modality_ids=None, mask=None, training=False, router_inputs=None, return_routing=False):
        return super().call(
            inputs, mask=mask, training=training, router_inputs=router_inputs, return_routing=return_routing,
            modality_ids=modality_ids,
        )

    def _modality(self, modality_ids, num_tokens):
        if modality_ids is None:
            return ops.zeros((num_tokens,), "int32")
        return ops.reshape(ops.cast(modality_ids, "int32"), (-1,))

    def route(self, tokens, mask, training, modality_ids=None):
        modality = self._modality(modality_ids, ops.shape(tokens)[0])
        groups = None if self.expert_modalities is None else TokenGroups(modality, self.allowed_experts())
        routing = self.router(tokens, mask=mask, training=training, groups=groups)
        if training and (self.local_entropy_loss_weight > 0 or self.global_entropy_loss_weight > 0):
            local, global_ = limoe.modality_entropy_losses(
                routing.router_probs, modality, self.num_modalities, mask, self.global_entropy_threshold
            )
            losses = {}
            if self.local_entropy_loss_weight > 0:
                losses["local_entropy_loss"] = self.local_entropy_loss_weight * ops.sum(local)
            if self.global_entropy_loss_weight > 0:
                losses["global_entropy_loss"] = self.global_entropy_loss_weight * ops.sum(global_)
            routing = with_aux_losses(routing, **losses)
        return routing

    def modality_counts(self, routing, modality, mask):
        """float32 `[m, e]`: routed assignments of each modality's valid tokens to each expert."""
        valid = valid_tokens(mask, ops.shape(modality)[0])
        by_modality = ops.one_hot(modality, self.num_modalities, dtype="float32") * valid[:, None]  # [t, m]
        return ops.einsum("tm,te->me", by_modality, routing.assignments(self.num_experts))

    def record(self, routing, result, mask, training, modality_ids=None):
        super().record(routing, result, mask, training)
        if self.record_stats and stats_are_writable(self.modality_stats):
            modality = self._modality(modality_ids, ops.shape(routing.router_probs)[0])
            self.modality_stats.update_state(self.modality_counts(routing, modality, mask))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_modalities": self.num_modalities,
                "expert_modalities": self.expert_modalities,
                "local_entropy_loss_weight": self.local_entropy_loss_weight,
                "global_entropy_loss_weight": self.global_entropy_loss_weight,
                "global_entropy_threshold": self.global_entropy_threshold,
            }
        )
        return config
