"""Qwen3.5-MoE in keras-hub: `Qwen3_5MoeSparseMoeBlock` and `Qwen3_5MoeExperts`.

keras-hub: a bias-free router (`_router_gate`); softmax, top-k, always renormalised; fused
gate-then-up SwiGLU experts; a shared expert times `sigmoid(x w)`; load-balancing loss over the
padding mask, times `router_aux_loss_coefficient`. Its decoders alternate linear (GatedDeltaNet)
and full attention; only the MoE block changes.
"""

import keras_hub
from keras import ops
from keras_hub.src.models.qwen3_5_moe.qwen3_5_moe_decoder import Qwen3_5MoeExperts, Qwen3_5MoeSparseMoeBlock

from keras_moe.hub.family import Family, SparseMoEBlock, token_mask
from keras_moe.hub.qwen_moe import FusedSwiGLUExperts
from keras_moe.hub.registry import register
from keras_moe.layers.moe_layer import gate_shared_output
from keras_moe.routing.token_choice import softmax_top_k_routing


class SparseQwen3_5MoeExperts(FusedSwiGLUExperts, Qwen3_5MoeExperts):
    """Qwen3.5-MoE's fused experts through keras-moe's dispatch."""


class SparseQwen3_5MoeSparseMoeBlock(SparseMoEBlock, Qwen3_5MoeSparseMoeBlock):
    """keras-hub's Qwen3.5-MoE block, dispatching each token to its top-k experts only."""

    def call(self, hidden_states, attention_mask=None, training=None):
        tokens = ops.reshape(hidden_states, (-1, self.hidden_dim))
        shared = gate_shared_output(self.shared_expert(tokens), self._shared_expert_gate(tokens))
        logits = self._router_gate(tokens)
        mask = token_mask(attention_mask, ops.shape(tokens)[0])
        routing = softmax_top_k_routing(ops.cast(logits, "float32"), self.top_k, "always", mask, self.router_aux_loss_coefficient)
        outputs = self.sparse_experts(tokens, routing, self.expert_bank, mask, training) + shared
        if training:
            self.add_loss(routing.aux_losses["load_balancing_loss"])
        return ops.reshape(outputs, ops.shape(hidden_states)), logits


QWEN3_5_MOE = register(Family(
    "qwen3_5_moe",
    backbone=keras_hub.models.Qwen3_5MoeBackbone,
    tasks=[keras_hub.models.Qwen3_5MoeCausalLM],
    promotions={Qwen3_5MoeSparseMoeBlock: SparseQwen3_5MoeSparseMoeBlock, Qwen3_5MoeExperts: SparseQwen3_5MoeExperts},
    expert_layer_names=["experts"],
))
