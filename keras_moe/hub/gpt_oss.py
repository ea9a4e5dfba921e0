"""GPT-OSS (OpenAI 2025) in keras-hub: `GptOssSparseMoeBlock` and `GptOssExperts`.

keras-hub: a router with a bias; the top-k logits, softmaxed among themselves (= softmax, top-k,
renormalised); experts with an interleaved gate/up kernel `[e, h, 2f]` (gate columns `0::2`, up
`1::2`), biases, and the clamped SwiGLU `(clip(up, +-limit) + 1) * g * sigmoid(alpha g)`,
`g = min(gate, limit)` (limit 7, alpha 1.702); no auxiliary loss. The block returns the dense
`[t, e]` router scores with its output.
"""

import keras_hub
from keras import ops
from keras_hub.src.models.gpt_oss.gpt_oss_decoder import GptOssExperts, GptOssSparseMoeBlock

from keras_moe.experts import activations
from keras_moe.experts.expert_math import ExpertMath
from keras_moe.experts.lora import ExpertLoRA
from keras_moe.hub.family import Family, SparseMoEBlock, dense_scores
from keras_moe.hub.registry import register
from keras_moe.routing.token_choice import softmax_top_k_routing


class SparseGptOssExperts(ExpertLoRA, ExpertMath, GptOssExperts):
    """GPT-OSS's expert weights (interleaved layout, biases, clamped SwiGLU) for `ExpertMath`."""

    gate_up_layout = "interleaved"

    @property
    def expert_activation(self):
        return activations.get({"name": "clamped_swiglu", "limit": self.limit, "alpha": self.alpha})

    def base_kernel(self, name):
        return {"in": self.gate_up_proj, "out": self.down_proj}[name]

    def expert_bias(self, name):
        return {"in": self.gate_up_proj_bias, "out": self.down_proj_bias}[name]

    def expert_output_scale(self):
        return None


class SparseGptOssSparseMoeBlock(SparseMoEBlock, GptOssSparseMoeBlock):
    """keras-hub's GPT-OSS block, dispatching each token to its top-k experts only."""

    def call(self, hidden_states):
        tokens = ops.reshape(hidden_states, (-1, self.hidden_dim))
        logits = self.router.router_dense(tokens)
        routing = softmax_top_k_routing(ops.cast(logits, "float32"), self.top_k, "always")
        outputs = self.sparse_experts(tokens, routing, self.experts)
        return ops.reshape(outputs, ops.shape(hidden_states)), dense_scores(routing, self.num_experts)


GPT_OSS = register(Family(
    "gpt_oss",
    backbone=keras_hub.models.GptOssBackbone,
    tasks=[keras_hub.models.GptOssCausalLM],
    promotions={GptOssSparseMoeBlock: SparseGptOssSparseMoeBlock, GptOssExperts: SparseGptOssExperts},
    expert_layer_names=["experts"],
))
