"""Soft MoE routing (Puigcerver et al. 2023, "From Sparse to Soft Mixtures of Experts").

Axis letters: `b` batch, `s` sequence, `n = e p` slots, `e` experts, `p` slots per expert, `h` hidden.
"""

from typing import Any, NamedTuple

import keras
from keras import ops

from keras_moe import dispatch as dispatch_lib
from keras_moe.routing.common import DispatchResult, valid_tokens
from keras_moe.routing.registry import register_router
from keras_moe.routing.router import Router
from keras_moe.utils.validation import check_bool, check_positive_int


class SoftRouting(NamedTuple):
    """Soft MoE slot mixtures of a sequence's tokens.

    Fields: `router_logits [b, s, n]`; `router_probs` float32 `[t, e]` (each token's combine weight
    per expert, summed over its slots: for statistics); `dispatch_weights [b, s, n]` (softmax over
    the sequence); `combine_weights [b, s, n]` (softmax over slots); `aux_losses` dict.
    """

    router_logits: Any
    router_probs: Any
    dispatch_weights: Any
    combine_weights: Any
    aux_losses: dict

    @staticmethod
    def tokens(inputs, mask):
        """Soft MoE mixes tokens within a sequence: `[b, s, h]` (a `[t, h]` input is one sequence)."""
        if mask is not None:
            mask = ops.cast(mask, "float32")
        if len(inputs.shape) == 2:
            return inputs[None], None if mask is None else mask[None]
        return inputs, mask

    def dispatch(self, tokens, experts, options=None, mask=None):
        """Slots go through the experts and back; `options` are ignored (nothing is dropped)."""
        num_slots = self.dispatch_weights.shape[-1] // experts.num_experts
        outputs = dispatch_lib.soft_dispatch(tokens, self.dispatch_weights, self.combine_weights, experts, num_slots)
        valid = valid_tokens(mask, ops.shape(self.router_probs)[0])
        counts = ops.sum(self.router_probs * valid[:, None], axis=0)
        return DispatchResult(outputs, counts, 0.0, 0.0)

    def assignments(self, num_experts):
        """The expert with the largest combine weight stands for the token."""
        return ops.one_hot(ops.argmax(self.router_probs, axis=-1), num_experts, dtype="float32")

    def decisions(self):
        weights, ids = ops.top_k(self.router_probs, 1)
        return ops.cast(ids, "int32"), weights


@register_router("soft")
@keras.saving.register_keras_serializable(package="keras_moe")
class SoftMoERouter(Router):
    """Slots are learned convex mixtures of a sequence's tokens; no token is ever dropped.

    Logits `L = X Phi` `[b, s, n]` with `n = num_experts * num_slots`. Dispatch weights are a softmax
    over the sequence (each slot mixes tokens), combine weights a softmax over slots (each token
    mixes slot outputs). With `normalize=True`, `X` and `Phi` are L2-normalised and `Phi` scaled by a
    learned scalar (the paper's recipe for large models). Padding tokens get no dispatch weight.

    Args:
        num_experts: int `e`.
        num_slots: int, slots per expert `p`.
        normalize: bool, L2-normalise inputs and the slot parameters.
        router_z_loss_weight, jitter_noise, use_bias, kernel_initializer, seed: see `Router`.

    Call args:
        tokens: float `[b, s, h]`; mask: optional `[b, s]`.

    Example:

    ```python
    router = keras_moe.routing.SoftMoERouter(num_experts=4, num_slots=2)
    assert tuple(router(np.random.rand(2, 5, 8).astype("float32")).dispatch_weights.shape) == (2, 5, 8)
    ```
    """

    routing_type = SoftRouting

    def __init__(
        self,
        num_experts,
        num_slots=1,
        normalize=True,
        router_z_loss_weight=0.0,
        jitter_noise=0.0,
        use_bias=False,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            num_experts=num_experts,
            jitter_noise=jitter_noise,
            router_z_loss_weight=router_z_loss_weight,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer or "lecun_normal",
            seed=seed,
            **kwargs,
        )
        self.num_slots = check_positive_int("num_slots", num_slots)
        self.normalize = check_bool("normalize", normalize)

    @property
    def experts_per_token(self):
        return float(self.num_experts)  # every expert's slots mix every token

    @property
    def num_router_outputs(self):
        return self.num_experts * self.num_slots

    def parameter_count(self, hidden_dim):
        return super().parameter_count(hidden_dim) + (1 if self.normalize else 0)

    def build(self, input_shape):
        super().build(input_shape)
        if self.normalize:
            self.scale = self.add_weight(name="scale", shape=(), initializer="ones")

    def compute_logits(self, tokens, training=False):
        if not self.normalize:
            return super().compute_logits(tokens, training)
        tokens = self.jitter(tokens, training)
        tokens = tokens / ops.sqrt(ops.sum(ops.square(tokens), axis=-1, keepdims=True) + 1e-6)
        kernel = self.kernel / ops.sqrt(ops.sum(ops.square(self.kernel), axis=0, keepdims=True) + 1e-6)
        logits = ops.matmul(tokens, self.scale * kernel)
        return logits + self.bias if self.use_bias else logits

    def route(self, tokens, logits, mask, training, groups=None):
        if len(logits.shape) != 3:
            raise ValueError(f"`SoftMoERouter` expects tokens of shape [b, s, h]. Received shape {tokens.shape}")
        dispatch_logits = logits if mask is None else ops.where(mask[:, :, None] > 0, logits, -1e9)
        dispatch = ops.softmax(dispatch_logits, axis=1)  # over the sequence: [b, s, n]
        if mask is not None:
            dispatch = dispatch * mask[:, :, None]
        combine = ops.softmax(logits, axis=-1)  # over slots: [b, s, n]
        batch, seq = ops.shape(combine)[0], ops.shape(combine)[1]
        per_expert = ops.sum(ops.reshape(combine, (batch, seq, self.num_experts, self.num_slots)), axis=-1)
        return SoftRouting(logits, ops.reshape(per_expert, (-1, self.num_experts)), dispatch, combine, {})

    def get_config(self):
        config = super().get_config()
        config.update({"num_slots": self.num_slots, "normalize": self.normalize})
        return config
