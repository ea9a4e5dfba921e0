"""ModalityMoELayer: MoELayer's call path with token groups; restricted routing never crosses modalities;
per-modality load balancing and LIMoE losses by value; statistics; serialisation."""

import keras
import numpy as np
import pytest

from keras_moe.layers import ModalityMoELayer, MoELayer
from tests.conftest import to_numpy
from tests.contracts import assert_config_complete, assert_keras_round_trip

TEXT_EXPERTS, IMAGE_EXPERTS = [0, 1, 2], [3, 4]


def top_k(k, **config):
    return {"class_name": "top_k", "config": {"top_k": k, **config}}


def inputs(batch=4, length=10, hidden=8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, length, hidden)).astype("float32")
    modality = rng.integers(0, 2, (batch, length)).astype("int32")
    return x, modality


@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("training", [False, True])
def test_restricted_routing_never_sends_a_token_to_another_modalitys_expert(k, training):
    layer = ModalityMoELayer(5, 8, router=top_k(k, jitter_noise=0.5), expert_modalities=[0, 0, 0, 1, 1], dispatch="dropless")
    x, modality = inputs()
    # Large inputs: strong, random router preferences that would cross modalities if not masked.
    _, routing = layer(x * 50.0, modality_ids=modality, training=training, return_routing=True)
    chosen, probs = to_numpy(routing.expert_index), to_numpy(routing.router_probs)  # [t, k], [t, e]
    is_text = modality.reshape(-1) == 0
    assert set(chosen[is_text].ravel()) <= set(TEXT_EXPERTS)
    assert set(chosen[~is_text].ravel()) <= set(IMAGE_EXPERTS)
    assert np.all(probs[is_text][:, IMAGE_EXPERTS] == 0) and np.all(probs[~is_text][:, TEXT_EXPERTS] == 0)
    counts = to_numpy(layer.modality_stats.counts())  # [m, e]
    assert counts[0, IMAGE_EXPERTS].sum() == 0 and counts[1, TEXT_EXPERTS].sum() == 0
    assert counts.sum() == x.shape[0] * x.shape[1] * k


def test_any_modality_experts_serve_both():
    layer = ModalityMoELayer(3, 8, router=top_k(1), expert_modalities=[0, 1, -1], dispatch="dropless")
    np.testing.assert_array_equal(to_numpy(layer.allowed_experts()), [[1, 0, 1], [0, 1, 1]])


def test_without_expert_modalities_it_is_the_plain_moe_layer():
    x, modality = inputs()
    plain = MoELayer(4, 8, router=top_k(2), dispatch="dropless")
    modal = ModalityMoELayer(4, 8, router=top_k(2), dispatch="dropless")
    plain.build(x.shape)
    modal.build(x.shape)
    modal.set_weights(plain.get_weights())
    out_plain, routing_plain = plain(x, return_routing=True, training=True)
    out_modal, routing_modal = modal(x, modality_ids=modality, return_routing=True, training=True)
    np.testing.assert_allclose(to_numpy(out_modal), to_numpy(out_plain), rtol=1e-6, atol=1e-7)
    for key, value in routing_plain.aux_losses.items():
        np.testing.assert_allclose(to_numpy(routing_modal.aux_losses[key]), to_numpy(value), rtol=1e-6)


def test_per_modality_load_balancing_by_value():
    """Each modality is balanced over its own experts: `mean_m n_m sum_{e usable by m} f_{m,e} P_{m,e}`."""
    layer = ModalityMoELayer(5, 8, router=top_k(1, load_balancing_loss_weight=1.0, router_z_loss_weight=0.0),
                             expert_modalities=[0, 0, 0, 1, 1], dispatch="dropless")
    x, modality = inputs(seed=3)
    modality = (np.random.default_rng(4).random(modality.shape) < 0.2).astype("int32")  # few image tokens
    mask = np.ones(modality.shape, "float32")
    mask[:, 8:] = 0
    _, routing = layer(3.0 * x, modality_ids=modality, mask=mask, return_routing=True)
    probs, chosen = to_numpy(routing.router_probs), to_numpy(routing.expert_index)[:, 0]
    modality, valid = modality.reshape(-1), mask.reshape(-1) > 0
    allowed = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 1, 1]], "float64")
    losses = []
    for m in range(2):
        rows = valid & (modality == m)
        fraction = np.bincount(chosen[rows], minlength=5) / rows.sum()
        mean_prob = probs[rows].mean(axis=0)
        losses.append(allowed[m].sum() * np.sum(fraction * mean_prob * allowed[m]))
    assert float(to_numpy(routing.aux_losses["load_balancing_loss"])) == pytest.approx(np.mean(losses), rel=1e-5)
    # The global loss would differ: experts of the rarer modality look under-used to it.
    global_fraction = np.bincount(chosen[valid], minlength=5) / valid.sum()
    assert abs(5 * np.sum(global_fraction * probs[valid].mean(axis=0)) - np.mean(losses)) > 0.05


def test_learned_routing_adds_limoe_losses_when_training_and_reports_purity():
    layer = ModalityMoELayer(4, 8, router=top_k(1), dispatch="dropless", local_entropy_loss_weight=0.1,
                             global_entropy_loss_weight=0.1, global_entropy_threshold=0.5)
    x, modality = inputs()
    _, routing = layer(x, modality_ids=modality, training=False, return_routing=True)
    assert not layer.losses and "local_entropy_loss" not in routing.aux_losses
    _, routing = layer(x, modality_ids=modality, training=True, return_routing=True)
    assert {"local_entropy_loss", "global_entropy_loss"} <= set(routing.aux_losses)
    assert len(layer.losses) == 1
    total = sum(float(to_numpy(v)) for v in routing.aux_losses.values())
    assert float(to_numpy(layer.losses[0])) == pytest.approx(total, rel=1e-5)
    counts = to_numpy(layer.modality_stats.counts())  # two calls, each token once (top-1)
    assert counts.sum() == 2 * x.shape[0] * x.shape[1]
    purity = float(to_numpy(layer.modality_stats.result()[f"{layer.name}_modality_purity"]))
    assert purity == pytest.approx(counts.max(axis=0).sum() / counts.sum(), rel=1e-6)
    assert "local_entropy_loss" in layer.aux_loss_names and "load_balancing_loss" in layer.aux_loss_names


def test_padding_counts_in_no_modality_statistic():
    layer = ModalityMoELayer(4, 8, router=top_k(2), expert_modalities=[0, 0, 1, 1], dispatch="dropless")
    x, modality = inputs()
    mask = np.ones(modality.shape, "int32")
    mask[:, 5:] = 0
    layer(x, modality_ids=modality, mask=mask)
    counts = to_numpy(layer.modality_stats.counts())
    assert counts.sum() == mask.sum() * 2
    np.testing.assert_array_equal(counts.sum(axis=1), [2 * ((modality == m) & (mask > 0)).sum() for m in (0, 1)])


@pytest.mark.parametrize("kwargs, message", [
    ({"expert_modalities": [0, 1]}, "expert_modalities"),
    ({"expert_modalities": [0, 0, 0, 2]}, "expert_modalities"),
    ({"expert_modalities": [0, 0, 0, 1], "router": top_k(2)}, "Modality 1 may use 1 experts"),
    ({"expert_modalities": [0, 0, 1, 1], "router": "expert_choice"}, "token-choice router"),
    ({"local_entropy_loss_weight": -1.0}, "local_entropy_loss_weight=-1"),
    ({"num_modalities": 0}, "num_modalities=0"),
])
def test_bad_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModalityMoELayer(4, 8, **{"router": top_k(1), **kwargs})


def test_config_round_trip_and_keras_save_load():
    layer = ModalityMoELayer(4, 8, router=top_k(1), expert_modalities=[0, 0, 1, 1], num_shared_experts=1,
                             dispatch="dropless", local_entropy_loss_weight=0.01, global_entropy_loss_weight=0.02,
                             global_entropy_threshold=1.0)
    assert_config_complete(layer)
    x, modality = inputs(batch=2, length=6)
    hidden = keras.Input((6, 8))
    ids = keras.Input((6,), dtype="int32")
    model = keras.Model([hidden, ids], layer(hidden, modality_ids=ids))
    assert_keras_round_trip(model, [x, modality], atol=1e-6)
