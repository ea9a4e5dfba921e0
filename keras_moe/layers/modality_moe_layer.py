"""An MoE layer that knows each token's modality: modality-restricted experts and LIMoE losses.

Axis letters: `t` tokens, `k` choices per token, `e` experts, `m` modalities, `h` hidden.

Two uses (both take `modality_ids` per token in `call`):

- **LIMoE** (Mustafa et al. 2022): learned routing over all experts (`expert_modalities=None`), with
  the per-modality local and global entropy losses of `keras_moe.losses.limoe`.
- **Modality experts** (e.g. VLMo's modality experts, Bao et al. 2022; BEiT-3): each expert is
  tagged with the one modality it serves (or `-1`, any modality); the router's logits of the other
  experts are masked to `-inf` before routing, so a text token can never reach an image expert
  and vice versa. Always-on shared experts come from `num_shared_experts` (DeepSeekMoE style). The
  load-balancing loss is then computed per modality over that modality's experts, since the
  global one cannot be balanced when the modalities have different token counts.

Per-modality routing counts (`modality_stats`, `[m, e]` assignments) feed the routing analysis
(`keras_moe.analysis`) and the `{name}_modality_purity` metric that `fit` logs.
"""

import keras
from keras import ops

from keras_moe.layers.moe_layer import MoELayer
from keras_moe.losses import auxiliary, limoe
from keras_moe.metrics.routing_stats import stats_are_writable
from keras_moe.utils.validation import check_non_negative_float, check_positive_int

MASKED_LOGIT = -1e9


@keras.saving.register_keras_serializable(package="keras_moe")
class ModalityRoutingStats(keras.metrics.Metric):
    """Routed assignments per (modality, expert), accumulated over an epoch.

    `result()`: `{name}_modality_purity`, the share of assignments that go to an expert whose
    majority modality is the token's own (1.0: every expert serves one modality; with no
    specialisation it falls to about the largest modality's share of tokens).
    `counts()` gives the `[m, e]` matrix; `shares()` its rows normalised (per modality, the share
    of that modality's assignments each expert receives).
    """

    def __init__(self, num_modalities, num_experts, name="modality_routing", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_modalities = num_modalities
        self.num_experts = num_experts
        self.assignment_counts = self.add_variable(shape=(num_modalities, num_experts), initializer="zeros", name="counts")

    def update_state(self, counts):
        self.assignment_counts.assign_add(ops.cast(counts, "float32"))

    def counts(self):
        return ops.convert_to_tensor(self.assignment_counts)

    def shares(self):
        counts = self.counts()
        return counts / ops.maximum(ops.sum(counts, axis=1, keepdims=True), 1.0)

    def result(self):
        counts = self.counts()
        total = ops.sum(counts)
        purity = ops.sum(ops.max(counts, axis=0)) / ops.maximum(total, 1.0)
        return {f"{self.name}_modality_purity": ops.where(total > 0, purity, float("nan"))}

    def get_config(self):
        return {"num_modalities": self.num_modalities, "num_experts": self.num_experts, "name": self.name}


@keras.saving.register_keras_serializable(package="keras_moe")
class ModalityMoELayer(MoELayer):
    """`MoELayer` whose routing sees each token's modality id.

    Args:
        num_experts, intermediate_dim, top_k, router, activation, num_shared_experts, dispatch,
            train_capacity_factor, eval_capacity_factor, min_expert_capacity, use_bias,
            kernel_initializer: see `MoELayer`. Use `dispatch="dropless"` with restricted experts:
            modalities with more tokens than others would overflow a uniform capacity.
        num_modalities: int >= 1 (the multimodal models use 0 = text, 1 = image).
        expert_modalities: None (learned routing over every expert) or a list of `num_experts`
            ints: the modality each expert serves, or -1 for any. Every modality needs at least
            `top_k` experts it may use.
        local_entropy_loss_weight: float >= 0, LIMoE local entropy loss weight (summed over modalities).
        global_entropy_loss_weight: float >= 0, LIMoE global entropy loss weight (summed over modalities).
        global_entropy_threshold: float or None, LIMoE's `tau` for the global loss (None: no threshold).

    Call args:
        inputs: `[b, s, h]` or `[t, h]`.
        modality_ids: int `[b, s]` / `[t]` (None: every token is modality 0, no restriction applies
            for learned routing).
        mask: optional padding mask like `inputs` without the hidden axis.
        training: bool.

    Example:
    >>> layer = ModalityMoELayer(4, 16, top_k=1, expert_modalities=[0, 0, 1, 1], dispatch="dropless")
    >>> layer(np.ones((2, 3, 8), "float32"), modality_ids=np.array([[0, 1, 1], [0, 0, 1]])).shape
    TensorShape([2, 3, 8])
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
        super().__init__(num_experts, intermediate_dim, **kwargs)
        self.num_modalities = check_positive_int("num_modalities", num_modalities)
        if expert_modalities is not None:
            expert_modalities = [int(m) for m in expert_modalities]
            if len(expert_modalities) != num_experts or any(m < -1 or m >= num_modalities for m in expert_modalities):
                raise ValueError(
                    f"`expert_modalities` must list {num_experts} modality ids in [-1, {num_modalities}) "
                    f"(-1: any modality). Received: expert_modalities={expert_modalities}"
                )
            if self.router.kind != "token_choice":
                raise ValueError(f"Modality-restricted experts need a token-choice router. Received: router={self.router.name!r}")
            for m in range(num_modalities):
                usable = sum(1 for e in expert_modalities if e in (m, -1))
                if usable < self.router.top_k:
                    raise ValueError(
                        f"Modality {m} may use {usable} experts, fewer than top_k={self.router.top_k}. "
                        f"Received: expert_modalities={expert_modalities}"
                    )
        self.expert_modalities = expert_modalities
        self.local_entropy_loss_weight = check_non_negative_float("local_entropy_loss_weight", local_entropy_loss_weight)
        self.global_entropy_loss_weight = check_non_negative_float("global_entropy_loss_weight", global_entropy_loss_weight)
        if global_entropy_threshold is not None:
            global_entropy_threshold = check_non_negative_float("global_entropy_threshold", global_entropy_threshold)
        self.global_entropy_threshold = global_entropy_threshold
        self.modality_stats = ModalityRoutingStats(num_modalities, num_experts, name=self.name)

    def allowed_experts(self):
        """float32 `[m, e]`: 1 where modality `m` may use expert `e`."""
        if self.expert_modalities is None:
            return ops.ones((self.num_modalities, self.num_experts), "float32")
        table = [[1.0 if e in (m, -1) else 0.0 for e in self.expert_modalities] for m in range(self.num_modalities)]
        return ops.convert_to_tensor(table, "float32")

    def call(self, inputs, modality_ids=None, mask=None, training=False):
        tokens, token_mask = self._tokens(inputs, mask)
        modality = self._modality(modality_ids, tokens)
        result = self._route(tokens, modality, token_mask, training)
        outputs, counts, dropped, assignments = self._dispatch(tokens, result, token_mask, training)
        self._record(result, counts, dropped, assignments, token_mask, training)
        self._record_modalities(result, modality, token_mask)
        outputs = ops.reshape(outputs, ops.shape(inputs))
        if self.shared_experts is not None:
            outputs = outputs + self.shared_experts(inputs)
        return outputs

    def _modality(self, modality_ids, tokens):
        if modality_ids is None:
            return ops.zeros((ops.shape(tokens)[0],), "int32")
        return ops.reshape(ops.cast(modality_ids, "int32"), (-1,))

    def _route(self, tokens, modality, mask, training):
        if self.expert_modalities is None:
            result = self.router(tokens, mask=mask, training=training)
        else:
            # The router's own rule on logits where other modalities' experts are masked out.
            allowed = ops.take(self.allowed_experts(), modality, axis=0)  # [t, e]
            logits = self.router.compute_logits(tokens, training=training)
            logits = ops.where(allowed > 0, logits, MASKED_LOGIT)
            result = self.router.route(tokens, logits, mask, training)
            if self.router.router_z_loss_weight > 0:
                z = auxiliary.router_z_loss(logits, mask)
                result.aux_losses["router_z_loss"] = self.router.router_z_loss_weight * z
            if "load_balancing_loss" in result.aux_losses:
                weight = self.router.load_balancing_loss_weight
                result.aux_losses["load_balancing_loss"] = weight * self._modality_load_balancing(result, modality, mask)
        if training and (self.local_entropy_loss_weight > 0 or self.global_entropy_loss_weight > 0):
            local, global_ = limoe.modality_entropy_losses(
                result.router_probs, modality, self.num_modalities, mask, self.global_entropy_threshold
            )
            if self.local_entropy_loss_weight > 0:
                result.aux_losses["local_entropy_loss"] = self.local_entropy_loss_weight * ops.sum(local)
            if self.global_entropy_loss_weight > 0:
                result.aux_losses["global_entropy_loss"] = self.global_entropy_loss_weight * ops.sum(global_)
        return result

    def _modality_load_balancing(self, result, modality, mask):
        """Mean over modalities of `n_m * sum_{e usable by m} f_e P_e` over that modality's tokens."""
        valid = ops.ones_like(modality, "float32") if mask is None else ops.cast(mask, "float32")
        routed = ops.sum(ops.one_hot(result.expert_index, self.num_experts, dtype="float32"), axis=1)  # [t, e]
        allowed = self.allowed_experts()
        losses = []
        for m in range(self.num_modalities):
            weight = valid * ops.cast(ops.equal(modality, m), "float32")  # [t]
            counts = ops.sum(routed * weight[:, None], axis=0)
            fraction = counts / ops.maximum(ops.sum(counts), 1.0)
            mean_prob = ops.sum(result.router_probs * weight[:, None], axis=0) / ops.maximum(ops.sum(weight), 1.0)
            losses.append(ops.sum(allowed[m]) * ops.sum(fraction * mean_prob * allowed[m]))
        return sum(losses) / float(self.num_modalities)

    def modality_counts(self, result, modality, mask):
        """float32 `[m, e]`: routed assignments of each modality's valid tokens to each expert."""
        valid = ops.ones_like(modality, "float32") if mask is None else ops.cast(mask, "float32")
        if result.kind == "token_choice":
            per_token = ops.sum(ops.one_hot(result.expert_index, self.num_experts, dtype="float32"), axis=1)
        else:  # expert choice / Soft MoE: the most probable expert stands for the token
            per_token = ops.one_hot(ops.argmax(result.router_probs, axis=-1), self.num_experts, dtype="float32")
        by_modality = ops.one_hot(modality, self.num_modalities, dtype="float32") * valid[:, None]  # [t, m]
        return ops.einsum("tm,te->me", by_modality, per_token)

    def _record_modalities(self, result, modality, mask):
        if stats_are_writable(self.modality_stats):
            self.modality_stats.update_state(self.modality_counts(result, modality, mask))

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
