"""Mixtral (Jiang et al. 2024) in keras-hub: `MixtralSparseMoeBlock` and `MixtralMoeExperts`.

keras-hub: a bias-free router `[h, e]`; softmax, top-k, renormalised (also at k = 1); SwiGLU
experts with separate gate and up kernels `[e, h, f]` and a down kernel `[e, f, h]`; the router's
jitter multiplies the expert inputs too; load-balancing loss times `router_aux_loss_coef`.
"""

import keras_hub
from keras import ops
from keras_hub.src.models.mixtral.mixtral_decoder import MixtralMoeExperts, MixtralSparseMoeBlock

from keras_moe.experts import activations
from keras_moe.experts.expert_math import ExpertMath
from keras_moe.experts.lora import ExpertLoRA
from keras_moe.hub.family import Family, SparseMoEBlock, token_mask
from keras_moe.hub.registry import register
from keras_moe.routing.token_choice import softmax_top_k_routing


class SparseMixtralExperts(ExpertLoRA, ExpertMath, MixtralMoeExperts):
    """keras-hub's Mixtral expert weights, computed by keras-moe's `ExpertMath` ("separate" layout)."""

    expert_activation = activations.get("swiglu")
    gate_up_layout = "separate"
    _KERNELS = {"gate": "_expert_feedforward_gate_dense", "up": "_expert_feedforward_intermediate_dense",
                "out": "_expert_feedforward_output_dense"}

    def base_kernel(self, name):
        return getattr(self, self._KERNELS[name])

    def expert_bias(self, name):
        return None

    def expert_output_scale(self):
        return None


class SparseMixtralSparseMoeBlock(SparseMoEBlock, MixtralSparseMoeBlock):
    """keras-hub's Mixtral block, dispatching each token to its top-k experts only."""

    def call(self, hidden_states, attention_mask=None, training=False):
        tokens = ops.reshape(hidden_states, (-1, self.hidden_dim))
        if training and self.router_jitter_noise > 0:  # as keras-hub: the jittered tokens feed router and experts
            tokens = tokens * ops.random.uniform(
                ops.shape(tokens), 1.0 - self.router_jitter_noise, 1.0 + self.router_jitter_noise, dtype=tokens.dtype
            )
        router_logits = self._sparse_feedforward_gate_dense(tokens)
        mask = token_mask(attention_mask, ops.shape(tokens)[0])
        routing = softmax_top_k_routing(
            ops.cast(router_logits, "float32"), self.top_k, "always", mask, self.router_aux_loss_coef
        )
        outputs = self.sparse_experts(tokens, routing, self.expert_bank, mask, training)
        if training:
            self.add_loss(routing.aux_losses["load_balancing_loss"])
        return ops.reshape(outputs, ops.shape(hidden_states)), router_logits


MIXTRAL = register(Family(
    "mixtral",
    backbone=keras_hub.models.MixtralBackbone,
    tasks=[keras_hub.models.MixtralCausalLM],
    promotions={MixtralSparseMoeBlock: SparseMixtralSparseMoeBlock, MixtralMoeExperts: SparseMixtralExperts},
    expert_layer_names=["experts"],
))
