"""Soft MoE routing (Puigcerver et al. 2023, "From Sparse to Soft Mixtures of Experts")."""

import keras
from keras import ops

from keras_moe.routing.router import Router
from keras_moe.routing.routing_result import RoutingResult
from keras_moe.utils.validation import check_positive_int


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
        router_z_loss_weight, jitter_noise, kernel_initializer, seed: see `Router`.

    Call args:
        tokens: float `[b, s, h]`; mask: optional `[b, s]`.

    Example:
    >>> router = SoftMoERouter(num_experts=4, num_slots=2)
    >>> router(np.random.rand(2, 5, 8).astype("float32")).dispatch_weights.shape
    TensorShape([2, 5, 8])
    """

    kind = "soft"

    def __init__(
        self,
        num_experts,
        num_slots=1,
        normalize=True,
        router_z_loss_weight=0.0,
        jitter_noise=0.0,
        kernel_initializer=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(
            num_experts=num_experts,
            top_k=1,
            jitter_noise=jitter_noise,
            router_z_loss_weight=router_z_loss_weight,
            kernel_initializer=kernel_initializer or "lecun_normal",
            seed=seed,
            **kwargs,
        )
        self.num_slots = check_positive_int("num_slots", num_slots)
        if not isinstance(normalize, bool):
            raise ValueError(f"`normalize` must be a bool. Received: normalize={normalize!r}")
        self.normalize = normalize

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
        tokens = ops.cast(tokens, "float32")
        if training and self.jitter_noise > 0:
            tokens = tokens * keras.random.uniform(
                ops.shape(tokens), minval=1.0 - self.jitter_noise, maxval=1.0 + self.jitter_noise, seed=self.seed_generator
            )
        tokens = tokens / ops.sqrt(ops.sum(ops.square(tokens), axis=-1, keepdims=True) + 1e-6)
        kernel = self.kernel / ops.sqrt(ops.sum(ops.square(self.kernel), axis=0, keepdims=True) + 1e-6)
        return ops.matmul(tokens, self.scale * kernel)

    def route(self, tokens, logits, mask, training):
        if len(logits.shape) != 3:
            raise ValueError(f"`SoftMoERouter` expects tokens of shape [b, s, h]. Received shape {tokens.shape}")
        dispatch_logits = logits if mask is None else ops.where(mask[:, :, None] > 0, logits, -1e9)
        dispatch = ops.softmax(dispatch_logits, axis=1)  # over the sequence: [b, s, n]
        if mask is not None:
            dispatch = dispatch * mask[:, :, None]
        combine = ops.softmax(logits, axis=-1)  # over slots: [b, s, n]
        batch, seq = ops.shape(combine)[0], ops.shape(combine)[1]
        per_expert = ops.sum(ops.reshape(combine, (batch, seq, self.num_experts, self.num_slots)), axis=-1)
        return RoutingResult(
            kind="soft",
            router_probs=ops.reshape(per_expert, (-1, self.num_experts)),
            dispatch_weights=dispatch,
            combine_weights=combine,
        )

    def get_config(self):
        config = super().get_config()
        config.pop("top_k")
        config.update({"num_slots": self.num_slots, "normalize": self.normalize})
        return config
