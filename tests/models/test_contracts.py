"""Keras contracts for the model layers: every `__init__` argument in `get_config`, and `from_config` round trips."""

import keras
import numpy as np
import pytest

import keras_moe
from keras_moe.models import CachedGroupedQueryAttention, MoETextClassifier, MoETransformerBackbone, MoETransformerBlock
from tests.conftest import random_tokens, to_numpy
from tests.contracts import assert_config_complete


def test_attention_config_complete():
    layer = CachedGroupedQueryAttention(
        num_heads=4, num_kv_heads=2, use_rotary=False, rope_max_wavelength=500, dropout=0.1,
        kernel_initializer="he_uniform", name="gqa",
    )
    clone = assert_config_complete(layer)
    assert (clone.num_heads, clone.num_kv_heads, clone.use_rotary, clone.rope_max_wavelength, clone.dropout) == (4, 2, False, 500, 0.1)
    assert isinstance(clone.kernel_initializer, keras.initializers.HeUniform)


@pytest.mark.parametrize("feed_forward", [
    lambda: keras_moe.FeedForward(8, activation="geglu", name="ffn"),
    lambda: keras_moe.MoELayer(4, 8, num_shared_experts=1, dispatch="dropless", name="moe"),
    lambda: keras_moe.MoELayer(4, 8, router="expert_choice", name="moe_ec"),
], ids=["feed_forward", "moe_top_k", "moe_expert_choice"])
def test_block_config_complete(feed_forward):
    block = MoETransformerBlock(
        num_heads=2, num_kv_heads=1, feed_forward=feed_forward(), causal=False, normalization="layer",
        layer_norm_epsilon=1e-6, use_rotary=False, rope_max_wavelength=500, dropout=0.1, kernel_initializer="he_uniform",
    )
    clone = assert_config_complete(block)
    assert type(clone.feed_forward) is type(block.feed_forward)
    assert clone.feed_forward.get_config() == block.feed_forward.get_config()
    assert clone.is_moe == block.is_moe and clone.causal is False and clone.normalization == "layer"


def test_block_rebuilt_from_config_computes_the_same_function():
    block = MoETransformerBlock(2, 1, keras_moe.FeedForward(16), causal=True)
    hidden = random_tokens(2, 8, 16)
    expected = to_numpy(block(hidden))
    clone = MoETransformerBlock.from_config(block.get_config())
    clone.build(hidden.shape)
    clone.set_weights(block.get_weights())
    np.testing.assert_allclose(to_numpy(clone(hidden)), expected, rtol=1e-6, atol=1e-6)


def test_block_rejects_other_feed_forward_layers():
    with pytest.raises(ValueError, match="feed_forward"):
        MoETransformerBlock(2, 1, keras.layers.Dense(8))


def test_backbone_and_classifier_config_complete():
    backbone = MoETransformerBackbone(
        vocabulary_size=32, num_layers=1, num_heads=2, hidden_dim=8, intermediate_dim=8, num_experts=2,
        router={"class_name": "top_k", "config": {"top_k": 1}}, causal=False,
    )
    assert_config_complete(backbone)
    # keras-hub's Task.get_config holds the backbone object itself, so compare the task's own arguments.
    classifier = MoETextClassifier(backbone, num_classes=2, dropout=0.2, activation="softmax")
    clone = MoETextClassifier.from_config(classifier.get_config())
    for key in ("num_classes", "dropout", "activation"):
        assert getattr(clone, key) == getattr(classifier, key)
    assert clone.backbone.get_config() == backbone.get_config()
