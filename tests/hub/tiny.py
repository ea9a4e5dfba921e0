"""Tiny random keras-hub MoE models of every supported family, with decisive routers.

Decisive: the router kernels are redrawn with a large scale (other kernels small), so no token's
k-th and (k+1)-th router probabilities are a near tie that float rounding could flip.
"""

import keras
import keras_hub
import numpy as np

H = 32
COMMON = dict(vocabulary_size=64, num_layers=2, hidden_dim=H, num_key_value_heads=2, dtype="float32")
CONFIGS = {
    "mixtral": (keras_hub.models.MixtralBackbone, keras_hub.models.MixtralCausalLM,
                dict(num_query_heads=4, intermediate_dim=48, num_experts=4, top_k=2)),
    "qwen_moe": (keras_hub.models.QwenMoeBackbone, keras_hub.models.QwenMoeCausalLM,
                 dict(num_query_heads=4, intermediate_dim=48, moe_intermediate_dim=24, shared_expert_intermediate_dim=40,
                      num_experts=4, top_k=2)),
    "qwen3_moe": (keras_hub.models.Qwen3MoeBackbone, keras_hub.models.Qwen3MoeCausalLM,
                  dict(num_query_heads=4, intermediate_dim=48, moe_intermediate_dim=24, num_experts=4, top_k=2, head_dim=8)),
    "gpt_oss": (keras_hub.models.GptOssBackbone, keras_hub.models.GptOssCausalLM,
                dict(num_query_heads=4, intermediate_dim=24, num_experts=4, top_k=2, head_dim=8)),
    "qwen3_5_moe": (keras_hub.models.Qwen3_5MoeBackbone, keras_hub.models.Qwen3_5MoeCausalLM,
                    dict(num_query_heads=4, head_dim=8, moe_intermediate_dim=24, shared_expert_intermediate_size=40,
                         num_experts=4, top_k=2, layer_types=["linear_attention", "full_attention"],
                         linear_num_key_heads=2, linear_num_value_heads=2, linear_key_head_dim=8, linear_value_head_dim=8)),
    "gemma4": (keras_hub.models.Gemma4Backbone, keras_hub.models.Gemma4CausalLM,
               dict(num_query_heads=4, intermediate_dim=48, head_dim=8, image_size=16, enable_moe_block=True,
                    num_experts=4, expert_intermediate_dim=24, num_experts_per_token=2)),
}
FAMILIES = sorted(CONFIGS)
ROUTER_NAMES = ("sparse_feedforward_gate_dense", "router_dense", "router_gate", "moe_router")


def backbone_inputs(family, batch=2, length=8, seed=0):
    """Token ids with one right-padded row (`position_ids` too where the backbone takes them)."""
    rng = np.random.default_rng(seed)
    padding = np.ones((batch, length), "int32")
    padding[1, length - 3:] = 0
    inputs = {"token_ids": (rng.integers(1, 64, (batch, length)) * padding).astype("int32"), "padding_mask": padding}
    if family == "gemma4":
        inputs["position_ids"] = np.broadcast_to(np.arange(length, dtype="int32"), (batch, length)).copy()
    return inputs


def decisive(model, seed=0):
    """Router kernels drawn with std 1, other matrices with std 0.1 (norm scales and biases kept)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if len(weight.shape) < 2 and not any(name in weight.path for name in ROUTER_NAMES):
            continue
        scale = 1.0 if any(name in weight.path for name in ROUTER_NAMES) else 0.1
        if len(weight.shape) >= 2 or scale == 1.0:
            weight.assign(rng.normal(0.0, scale, weight.shape).astype(weight.dtype))
    return model


def causal_lm(family, seed=0):
    keras.utils.set_random_seed(seed)
    backbone_cls, lm_cls, config = CONFIGS[family]
    backbone = backbone_cls(**COMMON, **config)
    lm = lm_cls(backbone=backbone, preprocessor=None)
    return decisive(lm, seed)
