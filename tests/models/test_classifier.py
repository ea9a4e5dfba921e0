"""MoETextClassifier: fit with routing metrics, masked mean pooling, `.keras` and SavedModel parity."""

import os
import tempfile

import keras
import numpy as np
import pytest

from keras_moe.models import MoETextClassifier, MoETransformerBackbone
from tests.conftest import backend, to_numpy
from tests.contracts import assert_keras_round_trip

ENCODER = dict(
    vocabulary_size=256, num_layers=2, num_heads=2, num_kv_heads=1, hidden_dim=16, intermediate_dim=16, num_experts=4,
    causal=False, router="switch", normalization="layer", moe_layer_interval=2,
)
PADDING = np.array([[1, 1, 1, 1, 1, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]], "int32")


def tiny_classifier(**kwargs):
    return MoETextClassifier(MoETransformerBackbone(**ENCODER), num_classes=3, **kwargs)


def inputs(padding_mask=PADDING, seed=0):
    token_ids = np.random.default_rng(seed).integers(1, 256, padding_mask.shape).astype("int32")
    return {"token_ids": token_ids * padding_mask, "padding_mask": padding_mask}


def test_fit_reports_accuracy_and_routing_metrics():
    classifier = tiny_classifier()
    assert [block.is_moe for block in classifier.backbone.transformer_layers] == [True, False]
    classifier.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    padding = np.array([[1] * 8, [1] * 6 + [0] * 2, [1] * 4 + [0] * 4, [1] * 7 + [0]] * 2, "int32")
    x, y = inputs(padding), np.arange(8) % 3
    history = classifier.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert "accuracy" in history and 0.0 <= history["accuracy"][-1] <= 1.0
    routing_keys = ("moe_0_load_max", "moe_0_load_min", "moe_0_dropped", "moe_0_entropy", "moe_0_load_balancing_loss")
    if backend() == "tensorflow":  # on JAX, fit cannot write the routing statistics (see stats_are_writable)
        for key in routing_keys:
            assert key in history
        assert 0.25 <= history["moe_0_load_max"][-1] <= 1.0
        assert 0.0 <= history["moe_0_load_min"][-1] <= 0.25
        assert 0.0 <= history["moe_0_dropped"][-1] < 1.0
        assert 0.0 < history["moe_0_entropy"][-1] <= np.log(4) + 1e-6
        assert history["moe_0_load_balancing_loss"][-1] > 0


def test_padded_positions_do_not_change_the_prediction():
    classifier = tiny_classifier()
    x = inputs()
    expected = to_numpy(classifier(x))
    noisy = dict(x, token_ids=np.where(PADDING == 1, x["token_ids"], 77).astype("int32"))
    np.testing.assert_allclose(to_numpy(classifier(noisy)), expected, rtol=1e-5, atol=1e-6)
    changed = dict(x, token_ids=x["token_ids"].copy())
    changed["token_ids"][:, 0] = changed["token_ids"][:, 0] % 255 + 1
    assert not np.allclose(to_numpy(classifier(changed)), expected, atol=1e-6)  # real tokens do matter


def test_head_sees_the_masked_mean_of_real_positions():
    classifier = tiny_classifier()
    x = inputs()
    hidden = to_numpy(classifier.backbone(x))
    pooled = (hidden * PADDING[:, :, None]).sum(axis=1) / PADDING.sum(axis=1, keepdims=True)
    dense = classifier.output_dense
    expected = pooled @ to_numpy(dense.kernel) + to_numpy(dense.bias)
    np.testing.assert_allclose(to_numpy(classifier(x)), expected, rtol=1e-5, atol=1e-5)


def test_softmax_activation_gives_probabilities():
    probs = to_numpy(tiny_classifier(activation="softmax")(inputs()))
    assert probs.shape == (2, 3) and (probs >= 0).all()
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0, rtol=1e-5)


def test_keras_save_load_parity():
    classifier = tiny_classifier(dropout=0.1)
    restored = assert_keras_round_trip(classifier, inputs())
    assert isinstance(restored, MoETextClassifier)
    assert restored.num_classes == 3 and restored.dropout == 0.1


def test_a_loaded_classifier_is_compiled_as_saved_without_warnings(tmp_path):
    import warnings

    classifier = tiny_classifier()
    classifier.compile(keras.optimizers.Adam(0.01))
    labels = np.array([0, 2])
    classifier.fit(inputs(), labels, epochs=1, verbose=0)
    classifier.save(tmp_path / "classifier.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither "compile() was not called" nor "Skipping variable loading for optimizer"
        restored = keras.models.load_model(tmp_path / "classifier.keras")
    assert restored.compiled and isinstance(restored.loss, keras.losses.SparseCategoricalCrossentropy)
    assert float(to_numpy(restored.optimizer.learning_rate)) == pytest.approx(0.01)
    np.testing.assert_array_equal(to_numpy(restored.optimizer.iterations), to_numpy(classifier.optimizer.iterations))
    for mine, theirs in zip(restored.optimizer.variables, classifier.optimizer.variables):
        np.testing.assert_array_equal(to_numpy(mine), to_numpy(theirs))
    assert "accuracy" in restored.evaluate(inputs(), labels, verbose=0, return_dict=True)


def test_saved_model_export_parity():
    if backend() != "tensorflow":
        pytest.skip("SavedModel export needs the TensorFlow backend")
    import tensorflow as tf

    # tests.contracts.assert_saved_model_parity passes one tensor; this model's signature takes a dict.
    classifier = tiny_classifier()
    x = inputs()
    expected = to_numpy(classifier(x, training=False))
    with tempfile.TemporaryDirectory() as tmp:
        classifier.export(os.path.join(tmp, "export"), verbose=False)
        reloaded = tf.saved_model.load(os.path.join(tmp, "export"))
        actual = reloaded.serve({"token_ids": tf.constant(x["token_ids"]), "padding_mask": tf.constant(x["padding_mask"])})
    np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=1e-5)


def test_invalid_num_classes_is_rejected():
    with pytest.raises(ValueError, match="num_classes=0"):
        MoETextClassifier(MoETransformerBackbone(**ENCODER), num_classes=0)
