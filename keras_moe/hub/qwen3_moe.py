"""Qwen3-MoE in keras-hub: `Qwen3SparseMoeBlock` and `Qwen3MoeExperts` (Qwen-MoE without the shared expert)."""

import keras_hub
from keras import ops
from keras_hub.src.models.qwen3_moe.qwen3_moe_decoder import Qwen3MoeExperts, Qwen3SparseMoeBlock

from keras_moe.hub.family import Family, SparseMoEBlock
from keras_moe.hub.qwen_moe import FusedSwiGLUExperts, qwen_routing
from keras_moe.hub.registry import register


class SparseQwen3MoeExperts(FusedSwiGLUExperts, Qwen3MoeExperts):
    """Qwen3-MoE's fused experts through keras-moe's dispatch."""


class SparseQwen3SparseMoeBlock(SparseMoEBlock, Qwen3SparseMoeBlock):
    """keras-hub's Qwen3-MoE block, dispatching each token to its top-k experts only."""

    def call(self, hidden_states, attention_mask=None, training=None):
        tokens = ops.reshape(hidden_states, (-1, self.hidden_dim))
        logits, mask, routing = qwen_routing(self, tokens, attention_mask, self.router_aux_loss_coefficient)
        outputs = self.sparse_experts(tokens, routing, self.expert_bank, mask, training)
        if training:
            self.add_loss(routing.aux_losses["load_balancing_loss"])
        return ops.reshape(outputs, ops.shape(hidden_states)), logits


QWEN3_MOE = register(Family(
    "qwen3_moe",
    backbone=keras_hub.models.Qwen3MoeBackbone,
    tasks=[keras_hub.models.Qwen3MoeCausalLM],
    promotions={Qwen3SparseMoeBlock: SparseQwen3SparseMoeBlock, Qwen3MoeExperts: SparseQwen3MoeExperts},
    expert_layer_names=["experts"],
))
