"""Sparse upcycling: every supported dense family becomes an MoE model whose outputs equal the dense
model's at initialisation (top-1 and top-2), whose experts are copies of the dense FFN, and whose router learns."""

import keras
import keras_hub
import numpy as np
import pytest

import keras_moe.hub as hub
from keras_moe.models import MoECausalLM, MoETransformerBackbone

M = keras_hub.models
SOURCES = {
    "llama": lambda: M.LlamaBackbone(vocabulary_size=64, num_layers=2, num_query_heads=4, hidden_dim=32, intermediate_dim=48,
                                     num_key_value_heads=2),
    "mistral": lambda: M.MistralBackbone(vocabulary_size=64, num_layers=2, num_query_heads=4, hidden_dim=32, intermediate_dim=48,
                                         num_key_value_heads=2, sliding_window=5),  # shorter than the inputs
    "qwen": lambda: M.QwenBackbone(vocabulary_size=64, num_layers=2, num_query_heads=4, hidden_dim=32, intermediate_dim=48,
                                   num_key_value_heads=2),
    "gemma": lambda: M.GemmaBackbone(vocabulary_size=64, num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=32,
                                     intermediate_dim=96, head_dim=12),
    "gpt2": lambda: M.GPT2Backbone(vocabulary_size=64, num_layers=2, num_heads=4, hidden_dim=32, intermediate_dim=48,
                                   max_sequence_length=16),
    "keras_moe_dense": lambda: MoETransformerBackbone(vocabulary_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                                      hidden_dim=32, intermediate_dim=48, num_experts=0),
}


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def trained_looking(backbone, seed=0):
    """Non-trivial weights everywhere (biases and norm scales included), as a trained model has."""
    rng = np.random.default_rng(seed)
    for weight in backbone.weights:
        std = 1.0 if "embedding" in weight.path else 0.1
        weight.assign((rng.normal(0.0, std, weight.shape) + (1.0 if weight.name in ("gamma", "scale") and "plus" not in weight.path
                                                              else 0.0)).astype("float32"))
    return backbone


def inputs():
    rng = np.random.default_rng(1)
    return {"token_ids": rng.integers(1, 64, (2, 12)).astype("int32"),
            "padding_mask": np.array([[1] * 12, [1] * 9 + [0] * 3], "int32")}


@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("source", sorted(SOURCES))
def test_upcycled_model_computes_what_the_dense_model_computes(source, top_k):
    dense = trained_looking(SOURCES[source]())
    x = inputs()
    moe = hub.upcycle(dense, num_experts=4, top_k=top_k, seed=0)
    assert isinstance(moe, MoETransformerBackbone) and len(moe.moe_layers) == 2
    assert moe.moe_layers[0].router.top_k == top_k
    real = x["padding_mask"] > 0
    np.testing.assert_allclose(numpy(moe(x))[real], numpy(dense(x))[real], atol=1e-5, rtol=0)
    experts = numpy(moe.moe_layers[0].experts.in_kernel)
    np.testing.assert_array_equal(experts[0], experts[3])  # every expert a copy


def test_a_causal_lm_upcycles_with_its_preprocessor_and_the_router_learns():
    dense = M.LlamaCausalLM(trained_looking(SOURCES["llama"]()), preprocessor=None)
    x = inputs()
    lm = hub.upcycle(dense, num_experts=4, top_k=1, seed=0)
    assert isinstance(lm, MoECausalLM) and lm.preprocessor is None
    real = x["padding_mask"] > 0
    np.testing.assert_allclose(numpy(lm(x))[real], numpy(dense(x))[real], atol=1e-5, rtol=0)
    if keras.backend.backend() == "tensorflow":  # top-1 with weight exactly 1, yet the router gets a gradient
        import tensorflow as tf

        router = lm.backbone.moe_layers[0].router.kernel
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.square(lm(x)))
        assert float(tf.reduce_max(tf.abs(tape.gradient(loss, router.value)))) > 0


def test_expert_noise_re_initialises_a_share_of_each_experts_units():
    dense = trained_looking(SOURCES["llama"]())
    x = inputs()
    noisy = hub.upcycle(dense, num_experts=4, expert_noise=0.5, seed=3)
    again = hub.upcycle(dense, num_experts=4, expert_noise=0.5, seed=3)
    out_kernel = numpy(noisy.moe_layers[0].experts.out_kernel)  # [e, f, h]
    original = numpy(dense.transformer_layers[0]._feedforward_output_dense.kernel)
    kept = [(np.abs(out_kernel[e] - original).max(axis=1) == 0).sum() for e in range(4)]
    assert kept == [24, 24, 24, 24]  # half of each expert's 48 units untouched
    assert not np.array_equal(out_kernel[0], out_kernel[1])  # experts differ
    np.testing.assert_array_equal(numpy(again.moe_layers[0].experts.out_kernel), out_kernel)  # the seed fixes them
    assert not np.allclose(numpy(noisy(x)), numpy(dense(x)), atol=1e-4)


def test_sources_that_cannot_be_upcycled_exactly_are_refused():
    gemma2 = M.GemmaBackbone(vocabulary_size=64, num_layers=1, num_query_heads=2, num_key_value_heads=1, hidden_dim=16,
                             intermediate_dim=32, head_dim=8, use_post_ffw_norm=True, final_logit_soft_cap=30.0)
    with pytest.raises(ValueError, match="Gemma 2 features"):
        hub.upcycle(gemma2, num_experts=2)
    with pytest.raises(ValueError, match="already has 2 MoE blocks"):
        hub.upcycle(MoETransformerBackbone(vocabulary_size=8, num_layers=2, num_heads=2, hidden_dim=8, intermediate_dim=8), 4)
    with pytest.raises(ValueError, match="cannot read a MixtralBackbone.*LlamaBackbone"):
        hub.upcycle(M.MixtralBackbone(vocabulary_size=8, num_layers=1, num_query_heads=2, hidden_dim=8, intermediate_dim=8,
                                      num_key_value_heads=1, num_experts=2), 4)
    with pytest.raises(ValueError, match="expert_noise=1.5"):
        hub.upcycle(SOURCES["llama"](), 4, expert_noise=1.5)
