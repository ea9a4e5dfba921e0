"""Qwen1.5-MoE / Qwen2-MoE in keras-hub: `QwenSparseMoeBlock` and `QwenMoeExperts`.

keras-hub: a bias-free router; softmax, top-k, renormalised when `norm_top_k_prob` (also at k = 1);
SwiGLU experts with fused gate-then-up kernels `[e, h, 2f]`; a shared expert of any width times
`sigmoid(x w)`; load-balancing loss over the tokens that attend to anything, times
`router_aux_loss_coefficient`.
"""

import keras_hub
from keras import ops
from keras_hub.src.models.qwen_moe.qwen_moe_decoder import QwenMoeExperts, QwenSparseMoeBlock

from keras_moe.experts import activations
from keras_moe.experts.expert_math import ExpertMath
from keras_moe.experts.lora import ExpertLoRA
from keras_moe.hub.family import Family, SparseMoEBlock, token_mask
from keras_moe.hub.registry import register
from keras_moe.layers.moe_layer import gate_shared_output
from keras_moe.routing.token_choice import softmax_top_k_routing


class FusedSwiGLUExperts(ExpertLoRA, ExpertMath):
    """keras-hub's fused Qwen expert weights (`[e, h, 2f]` gate then up, `[e, f, h]`) for `ExpertMath`."""

    expert_activation = activations.get("swiglu")
    gate_up_layout = "fused"

    def base_kernel(self, name):
        return {"in": self._expert_feedforward_gate_dense, "out": self._expert_feedforward_output_dense}[name]

    def expert_bias(self, name):
        return None

    def expert_output_scale(self):
        return None


class SparseQwenMoeExperts(FusedSwiGLUExperts, QwenMoeExperts):
    """Qwen-MoE's experts through keras-moe's dispatch."""


def qwen_routing(block, tokens, attention_mask, coefficient):
    """Router logits, the float32 mask and keras-moe's `TokenChoiceRouting` for a Qwen block."""
    logits = block._sparse_feedforward_gate_dense(tokens)
    mask = token_mask(attention_mask, ops.shape(tokens)[0])
    normalize = "always" if block.norm_top_k_prob else False
    return logits, mask, softmax_top_k_routing(ops.cast(logits, "float32"), block.top_k, normalize, mask, coefficient)


class SparseQwenSparseMoeBlock(SparseMoEBlock, QwenSparseMoeBlock):
    """keras-hub's Qwen-MoE block, dispatching each token to its top-k experts only."""

    def call(self, hidden_states, attention_mask=None, training=None):
        tokens = ops.reshape(hidden_states, (-1, self.hidden_dim))
        logits, mask, routing = qwen_routing(self, tokens, attention_mask, self.router_aux_loss_coefficient)
        outputs = self.sparse_experts(tokens, routing, self.expert_bank, mask, training)
        outputs = outputs + gate_shared_output(self.shared_expert_dense(tokens), self.shared_expert_gate_dense(tokens))
        if training:
            self.add_loss(routing.aux_losses["load_balancing_loss"])
        return ops.reshape(outputs, ops.shape(hidden_states)), logits


QWEN_MOE = register(Family(
    "qwen_moe",
    backbone=keras_hub.models.QwenMoeBackbone,
    tasks=[keras_hub.models.QwenMoeCausalLM],
    promotions={QwenSparseMoeBlock: SparseQwenSparseMoeBlock, QwenMoeExperts: SparseQwenMoeExperts},
    expert_layer_names=["experts"],
))
