"""MixtureOfModels (whole models as experts) and the classical mixture-of-experts loss."""

import keras
import numpy as np
import pytest

import keras_moe
from tests.conftest import random_tokens, to_numpy
from tests.contracts import assert_config_complete


def two_modal_mixture(**kwargs):
    text = keras.Sequential([keras.layers.Dense(3, activation="softmax")], name="text_expert")
    image = keras.Sequential([keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")], name="image_expert")
    return keras_moe.MixtureOfModels([text, image], expert_inputs=[0, 1], **kwargs)


def inputs(batch=6):
    return [random_tokens(batch, 5, seed=1), random_tokens(batch, 4, 4, seed=2)]


def test_gate_weights_sum_to_one_and_mix_the_experts():
    mixture = two_modal_mixture()
    x = inputs()
    prediction = to_numpy(mixture(x))
    gates = to_numpy(mixture.gate_probabilities(x))
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-6)
    text, image = (to_numpy(e(x[i])) for e, i in zip(mixture.experts, (0, 1)))
    np.testing.assert_allclose(prediction, gates[:, :1] * text + gates[:, 1:] * image, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prediction.sum(axis=1), 1.0, rtol=1e-5)  # a mixture of distributions


def test_expert_outputs_and_gate_weights_come_with_the_prediction():
    mixture = two_modal_mixture(return_expert_outputs=True)
    x = inputs()
    outputs = mixture(x)
    experts, gates = to_numpy(outputs["expert_outputs"]), to_numpy(outputs["gate_weights"])
    assert experts.shape == (6, 2, 3)
    np.testing.assert_allclose(gates, to_numpy(mixture.gate_probabilities(x)), rtol=1e-6)
    np.testing.assert_allclose(to_numpy(outputs["prediction"]), np.einsum("bed,be->bd", experts, gates), rtol=1e-5)
    packed = to_numpy(keras_moe.losses.pack_mixture(outputs["expert_outputs"], outputs["gate_weights"]))
    np.testing.assert_allclose(packed[:, :, :-1], experts)
    np.testing.assert_allclose(packed[:, :, -1], gates)


def test_mixture_loss_matches_hand_computation():
    loss = keras_moe.MixtureOfExpertsLoss("sparse_categorical_crossentropy")
    # two experts, three classes; gate 0.25 / 0.75
    y_pred = np.array([[[0.7, 0.2, 0.1, 0.25], [0.1, 0.1, 0.8, 0.75]]], "float32")
    expected = 0.25 * -np.log(0.7) + 0.75 * -np.log(0.1)
    assert float(to_numpy(loss(np.array([0]), y_pred))) == pytest.approx(expected, rel=1e-5)
    assert float(to_numpy(keras_moe.MixtureOfExpertsLoss("mse")(np.array([[1.0]], "float32"),
                                                               np.array([[[1.0, 0.5], [3.0, 0.5]]], "float32")))) == pytest.approx(2.0)


def test_fit_with_the_classical_objective_and_save_load(tmp_path):
    mixture = two_modal_mixture(return_expert_outputs=True, name="mixture_layer")
    text_in, image_in = keras.Input((5,)), keras.Input((4, 4))
    outputs = mixture([text_in, image_in])
    packed = keras_moe.losses.pack_mixture(outputs["expert_outputs"], outputs["gate_weights"])
    model = keras.Model([text_in, image_in], {"prediction": outputs["prediction"], "mixture": packed})
    model.compile("adam", loss={"prediction": "sparse_categorical_crossentropy",
                                "mixture": keras_moe.MixtureOfExpertsLoss("sparse_categorical_crossentropy")})
    x, y = inputs(16), np.arange(16) % 3
    history = model.fit(x, {"prediction": y, "mixture": y}, epochs=2, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and "mixture_loss" in history.history
    expected = to_numpy(model(x)["prediction"])
    model.save(tmp_path / "mixture.keras")
    restored = keras.models.load_model(tmp_path / "mixture.keras")
    np.testing.assert_allclose(to_numpy(restored(x)["prediction"]), expected, rtol=0, atol=0)
    assert count_all_active(model)


def count_all_active(model):
    counts = keras_moe.count_params(model)
    return counts["total"] == counts["active"] == model.count_params()


def test_config_round_trip_and_validation():
    clone = assert_config_complete(two_modal_mixture(gate=keras_moe.DenseGate(2, entropy_loss_weight=0.1)))
    assert clone.gate.entropy_loss_weight == 0.1 and clone.expert_inputs == [0, 1]
    with pytest.raises(ValueError, match="at least 2"):
        keras_moe.MixtureOfModels([keras.layers.Dense(2)])
    with pytest.raises(ValueError, match="expert_inputs"):
        keras_moe.MixtureOfModels([keras.layers.Dense(2), keras.layers.Dense(2)], expert_inputs=[0])
    bad = keras_moe.MixtureOfModels([keras.layers.Dense(2), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match="same shape"):
        bad(random_tokens(2, 4))


def test_geometric_combination_is_the_normalised_weighted_product():
    mixture = two_modal_mixture(combination="geometric")
    x = inputs()
    prediction = to_numpy(mixture(x))
    gates = to_numpy(mixture.gate_probabilities(x))
    text, image = (to_numpy(e(x[i])) for e, i in zip(mixture.experts, (0, 1)))
    product = text ** gates[:, :1] * image ** gates[:, 1:]
    np.testing.assert_allclose(prediction, product / product.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_gate_smoothing_keeps_every_expert_above_its_floor():
    from keras_moe.experts.model_mixture import smooth_gates

    gates = np.array([[1.0, 0.0], [0.3, 0.7]], "float32")
    np.testing.assert_allclose(to_numpy(smooth_gates(gates, 0.5)), [[0.75, 0.25], [0.4, 0.6]], rtol=1e-6)
    smoothed = to_numpy(two_modal_mixture(gate_smoothing=0.6).gate_probabilities(inputs()))
    assert smoothed.min() >= 0.3 - 1e-6
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0, rtol=1e-6)


def test_expert_dropout_drops_one_expert_per_example_and_renormalises():
    from keras_moe.experts.model_mixture import drop_experts

    gates = np.full((256, 3), 1.0 / 3.0, "float32")
    dropped = to_numpy(drop_experts(gates, 0.5, keras.random.SeedGenerator(0)))
    np.testing.assert_allclose(dropped.sum(axis=1), 1.0, rtol=1e-5)
    zeros = (dropped == 0).sum(axis=1)
    assert set(zeros.tolist()) <= {0, 1} and 0.35 < zeros.mean() < 0.65
    np.testing.assert_allclose(dropped[zeros == 1].max(axis=1), 0.5, rtol=1e-5)
    assert (dropped == 0).sum(axis=0).min() > 0  # every expert gets dropped sometimes
    mixture = two_modal_mixture(expert_dropout=0.5, seed=1, return_expert_outputs=True)
    x = inputs(64)
    gates = to_numpy(mixture(x, training=True)["gate_weights"])
    assert ((gates == 0).sum(axis=1) == 1).any() and ((gates == 0).sum(axis=1) <= 1).all()
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(mixture(x)["gate_weights"]), to_numpy(mixture.gate_probabilities(x)), rtol=1e-6)


def test_separate_experts_and_gate_loss_matches_hand_computation():
    from keras_moe.losses.mixture_loss import SeparateExpertsAndGateLoss

    y_pred = np.array([[[0.7, 0.2, 0.1, 0.25], [0.1, 0.1, 0.8, 0.75]]], "float32")
    experts = -np.log(0.7) - np.log(0.1)
    arithmetic = experts - np.log(0.25 * 0.7 + 0.75 * 0.1)
    product = np.array([0.7, 0.2, 0.1]) ** 0.25 * np.array([0.1, 0.1, 0.8]) ** 0.75
    geometric = experts - np.log(product[0] / product.sum())
    for combination, expected in (("arithmetic", arithmetic), ("geometric", geometric)):
        loss = SeparateExpertsAndGateLoss(combination)
        assert float(to_numpy(loss(np.array([0]), y_pred))) == pytest.approx(expected, rel=1e-5)
        assert SeparateExpertsAndGateLoss.from_config(loss.get_config()).combination == combination
    with pytest.raises(ValueError, match="combination"):
        SeparateExpertsAndGateLoss("harmonic")


def test_new_options_round_trip_and_validate():
    clone = assert_config_complete(two_modal_mixture(combination="geometric", gate_smoothing=0.1, expert_dropout=0.2, seed=3))
    assert (clone.combination, clone.gate_smoothing, clone.expert_dropout, clone.seed) == ("geometric", 0.1, 0.2, 3)
    for kwargs, match in (({"combination": "harmonic"}, "combination"), ({"gate_smoothing": 1.0}, "gate_smoothing"),
                          ({"expert_dropout": -0.1}, "expert_dropout")):
        with pytest.raises(ValueError, match=match):
            two_modal_mixture(**kwargs)
