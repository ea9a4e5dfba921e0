"""Gemma 4 (26B-A4B presets, `enable_moe_block=True`) in keras-hub: its `Gemma4MoEBlock` expert bank.

keras-hub's decoder routes on the raw residual stream (`Gemma4Router`: scale-free RMSNorm, times
`h^-1/2` and a per-dimension scale, a projection, softmax, top-k, renormalised) and hands the expert
bank a dense `[t, e]` weight tensor with `k` non-zero entries per token, while the experts read
`pre_ffw_norm_moe(x)`; a dense MLP runs in parallel. Experts: GeGLU with tanh GELU, separate gate
and up kernels `[e, h, f]`, a down kernel `[e, f, h]` and a per-expert output scale `[e]`.

Only the expert bank changes: it takes each token's `k` non-zero weights (a top-k of `[t, e]`) and
computes those experts alone. The router, the norms and the dense path are keras-hub's.
"""

import keras_hub
from keras import ops
from keras_hub.src.models.gemma4.gemma4_decoder_block import Gemma4TextDecoderBlock
from keras_hub.src.models.gemma4.gemma4_moe import Gemma4MoEBlock

from keras_moe.experts import activations
from keras_moe.experts.expert_math import ExpertMath
from keras_moe.experts.lora import ExpertLoRA
from keras_moe.hub.family import Family, SparseMoEBlock
from keras_moe.hub.registry import register
from keras_moe.routing.token_choice import TokenChoiceRouting


class SparseGemma4MoEBlock(SparseMoEBlock, ExpertLoRA, ExpertMath, Gemma4MoEBlock):
    """keras-hub's Gemma 4 expert bank computing each token's `top_k` chosen experts only."""

    expert_activation = activations.get("geglu_tanh")
    gate_up_layout = "separate"
    top_k = None  # the router's `num_experts_per_token`, set when the model is made sparse

    def base_kernel(self, name):
        return {"gate": self.gate_proj, "up": self.up_proj, "out": self.down_proj}[name]

    def expert_bias(self, name):
        return None

    def expert_output_scale(self):
        return self.per_expert_scale

    def call(self, x, dispatch_weights):
        weights = ops.cast(dispatch_weights, "float32")
        weight, index = ops.top_k(weights, self.top_k)  # the k non-zero entries of each row
        routing = TokenChoiceRouting(weights, weights, ops.cast(index, "int32"), weight, {})
        return self.sparse_experts(x, routing, self)


def _set_top_k(backbone):
    for layer in backbone._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, Gemma4TextDecoderBlock) and getattr(layer, "enable_moe_block", False):
            layer.moe_expert_bank.top_k = int(layer.moe_router.num_experts_per_token)


GEMMA4 = register(Family(
    "gemma4",
    backbone=keras_hub.models.Gemma4Backbone,
    tasks=[keras_hub.models.Gemma4CausalLM],
    promotions={Gemma4MoEBlock: SparseGemma4MoEBlock},
    expert_layer_names=["moe_expert_bank"],
    prepare=_set_top_k,
))
