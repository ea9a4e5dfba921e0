"""ModalityMoELayer: restricted routing never crosses modalities; LIMoE losses; stats; serialisation."""

import keras
import numpy as np
import pytest

from keras_moe.layers.modality_moe_layer import ModalityMoELayer
from tests.contracts import assert_config_complete, assert_keras_round_trip

TEXT_EXPERTS, IMAGE_EXPERTS = [0, 1, 2], [3, 4]


def inputs(batch=4, length=10, hidden=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, length, hidden)).astype("float32")
    modality = rng.integers(0, 2, (batch, length)).astype("int32")
    return x, modality


@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("training", [False, True])
def test_restricted_routing_never_sends_a_token_to_another_modalitys_expert(top_k, training):
    layer = ModalityMoELayer(5, 8, top_k=top_k, expert_modalities=[0, 0, 0, 1, 1], dispatch="dropless",
                             router={"class_name": "top_k", "config": {"jitter_noise": 0.5}})
    x, modality = inputs()
    seen = []
    original = layer.router.route

    def spy(tokens, logits, mask, training):
        result = original(tokens, logits, mask, training)
        seen.append(result)
        return result

    layer.router.route = spy
    layer(x * 50.0, modality_ids=modality, training=training)  # large inputs: strong, random router preferences
    chosen = keras.ops.convert_to_numpy(seen[-1].expert_index)  # [t, k]
    probs = keras.ops.convert_to_numpy(seen[-1].router_probs)
    is_text = modality.reshape(-1) == 0
    assert set(chosen[is_text].ravel()) <= set(TEXT_EXPERTS)
    assert set(chosen[~is_text].ravel()) <= set(IMAGE_EXPERTS)
    assert np.all(probs[is_text][:, IMAGE_EXPERTS] == 0) and np.all(probs[~is_text][:, TEXT_EXPERTS] == 0)
    counts = keras.ops.convert_to_numpy(layer.modality_stats.counts())  # [m, e]
    assert counts[0, IMAGE_EXPERTS].sum() == 0 and counts[1, TEXT_EXPERTS].sum() == 0
    assert counts.sum() == x.shape[0] * x.shape[1] * top_k


def test_any_modality_experts_serve_both():
    layer = ModalityMoELayer(3, 8, top_k=1, expert_modalities=[0, 1, -1], dispatch="dropless")
    allowed = keras.ops.convert_to_numpy(layer.allowed_experts())
    np.testing.assert_array_equal(allowed, [[1, 0, 1], [0, 1, 1]])


def test_learned_routing_is_unrestricted_and_adds_limoe_losses_when_training():
    layer = ModalityMoELayer(4, 8, top_k=1, dispatch="dropless", local_entropy_loss_weight=0.1,
                             global_entropy_loss_weight=0.1, global_entropy_threshold=0.5)
    x, modality = inputs()
    layer(x, modality_ids=modality, training=False)
    assert not layer.losses
    layer(x, modality_ids=modality, training=True)
    assert len(layer.losses) == 1 and np.isfinite(float(keras.ops.convert_to_numpy(layer.losses[0])))
    purity = float(keras.ops.convert_to_numpy(layer.modality_stats.result()[f"{layer.name}_modality_purity"]))
    assert 0.5 <= purity <= 1.0


def test_padding_counts_in_no_modality_statistic():
    layer = ModalityMoELayer(4, 8, top_k=2, expert_modalities=[0, 0, 1, 1], dispatch="dropless")
    x, modality = inputs()
    mask = np.ones(modality.shape, "int32")
    mask[:, 5:] = 0
    layer(x, modality_ids=modality, mask=mask)
    assert keras.ops.convert_to_numpy(layer.modality_stats.counts()).sum() == mask.sum() * 2


@pytest.mark.parametrize("kwargs, message", [
    ({"expert_modalities": [0, 1]}, "expert_modalities"),
    ({"expert_modalities": [0, 0, 0, 2]}, "expert_modalities"),
    ({"expert_modalities": [0, 0, 0, 1], "top_k": 2}, "Modality 1 may use 1 experts"),
    ({"local_entropy_loss_weight": -1.0}, "local_entropy_loss_weight=-1"),
    ({"num_modalities": 0}, "num_modalities=0"),
])
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModalityMoELayer(4, 8, **{"top_k": 1, **kwargs})


def test_config_round_trip_and_keras_save_load():
    layer = ModalityMoELayer(4, 8, top_k=1, expert_modalities=[0, 0, 1, 1], num_shared_experts=1, dispatch="dropless",
                             local_entropy_loss_weight=0.01, global_entropy_loss_weight=0.02, global_entropy_threshold=1.0)
    assert_config_complete(layer)
    x, modality = inputs(batch=2, length=6)
    hidden = keras.Input((6, 8))
    ids = keras.Input((6,), dtype="int32")
    model = keras.Model([hidden, ids], layer(hidden, modality_ids=ids))
    assert_keras_round_trip(model, [x, modality], atol=1e-6)
