"""The two-tower contrastive model (image-to-name retrieval) on tiny synthetic inputs: its loss is the
hand-computed symmetric InfoNCE, one fit step without labels, recall@k on hand-made embeddings,
argument checks and config / `.keras` round trips."""

import keras
import numpy as np
import pytest

from keras_moe.models.multimodal import ContrastiveDualEncoder, contrastive_loss, image_tower, recall_at_k, text_tower
from tests.contracts import assert_config_complete, assert_keras_round_trip

IMAGE, LENGTH, VOCABULARY, BATCH = 8, 5, 12, 4


def features(batch=BATCH, seed=0):
    rng = np.random.default_rng(seed)
    padding = (np.arange(LENGTH)[None] < rng.integers(1, LENGTH + 1, (batch, 1))).astype("int32")
    return {"images": rng.random((batch, IMAGE, IMAGE, 3)).astype("float32"),
            "token_ids": (rng.integers(1, VOCABULARY, (batch, LENGTH)) * padding).astype("int32"), "padding_mask": padding}


def model(**kwargs):
    return ContrastiveDualEncoder(image_tower(IMAGE, filters=(4,)), text_tower(VOCABULARY, LENGTH, hidden_dim=4),
                                  **{"embedding_dim": 3, **kwargs})


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_loss_is_the_symmetric_info_nce_of_the_normalised_embeddings():
    encoder, x = model(temperature=0.5), features()
    images = keras.ops.convert_to_numpy(encoder.encode_images(x["images"]))
    texts = keras.ops.convert_to_numpy(encoder.encode_texts(x["token_ids"]))
    np.testing.assert_allclose(np.linalg.norm(images, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    logits = 2.0 * images @ texts.T  # scale = 1 / temperature
    np.testing.assert_allclose(keras.ops.convert_to_numpy(encoder(x)), logits, atol=1e-5)
    expected = -0.5 * (np.mean(np.diag(log_softmax(logits))) + np.mean(np.diag(log_softmax(logits.T))))
    loss = encoder.compute_loss(x, None, encoder(x), training=False)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(loss)), expected, rtol=1e-5)


def test_contrastive_loss_by_hand_on_a_two_by_two_batch():
    logits = np.array([[2.0, 0.0], [1.0, 3.0]], "float32")
    # image rows: -log(e^2 / (e^2 + 1)), -log(e^3 / (e + e^3)); name columns: -log(e^2 / (e^2 + e)), -log(e^3 / (1 + e^3))
    rows = np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-2.0))
    columns = np.log1p(np.exp(-1.0)) + np.log1p(np.exp(-3.0))
    expected = 0.5 * (rows / 2 + columns / 2)
    np.testing.assert_allclose(float(keras.ops.convert_to_numpy(contrastive_loss(logits))), expected, rtol=1e-6)


def test_one_fit_step_without_labels_updates_towers_projections_and_temperature():
    encoder = model()
    encoder.compile(optimizer=keras.optimizers.Adam(0.01))
    before = [keras.ops.convert_to_numpy(w).copy() for w in encoder.trainable_weights]
    history = encoder.fit(features(), batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(b, keras.ops.convert_to_numpy(w)) for b, w in zip(before, encoder.trainable_weights)]
    assert sum(changed) >= len(changed) // 2
    assert not np.isclose(float(keras.ops.convert_to_numpy(encoder.logit_scale)), np.log(1 / 0.07))


def test_logit_scale_is_clipped():
    encoder = model(temperature=0.5, max_logit_scale=3.0)
    encoder.logit_scale.assign(10.0)
    assert float(keras.ops.convert_to_numpy(encoder.scale())) == pytest.approx(3.0)


def test_recall_at_k_on_hand_made_embeddings():
    identity = np.eye(5)
    assert recall_at_k(identity, identity) == {"recall@1": 1.0, "recall@5": 1.0}
    # Reversed: image i matches name 4 - i; only the middle one (i = 2) is its own. The others tie their own
    # name with three more at similarity 0 and rank it last (ties count against the image): rank 4 of 5.
    assert recall_at_k(identity, identity[::-1], ks=(1, 4, 5)) == {"recall@1": 0.2, "recall@4": 0.2, "recall@5": 1.0}
    # No ties: points on a quarter circle, names in reverse order. Image i's own name is |4 - 2i| steps
    # away; its rank is the number of names closer: i = 0 -> 4, 1 -> 3 (steps 1, 0, 1), 2 -> 0, 3 -> 3, 4 -> 4.
    angles = np.linspace(0, np.pi / 2, 5)
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert recall_at_k(points, points[::-1], ks=(1, 3, 4)) == {"recall@1": 0.2, "recall@3": 0.2, "recall@4": 0.6}
    assert recall_at_k(np.ones((4, 2)), np.ones((4, 2)), ks=(1, 3, 4)) == {"recall@1": 0.0, "recall@3": 0.0, "recall@4": 1.0}


@pytest.mark.parametrize("kwargs, message", [
    ({"embedding_dim": 0}, "embedding_dim"),
    ({"temperature": -1.0}, "temperature"),
    ({"temperature": 0.001}, "max_logit_scale"),
    ({"max_logit_scale": float("inf")}, "max_logit_scale"),
])
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        model(**kwargs)


def test_bad_towers_and_recall_inputs_are_rejected():
    with pytest.raises(ValueError, match="image_tower"):
        ContrastiveDualEncoder(keras.layers.Dense(3), text_tower(VOCABULARY, LENGTH, hidden_dim=4))
    with pytest.raises(ValueError, match="one shape"):
        recall_at_k(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="ks"):
        recall_at_k(np.eye(3), np.eye(3), ks=(0,))


def test_config_and_keras_round_trip():
    encoder = model(temperature=0.1)
    clone = assert_config_complete(encoder)
    assert clone.embedding_dim == 3 and clone.temperature == pytest.approx(0.1)
    encoder.logit_scale.assign(1.5)  # a trained value: must survive saving
    restored = assert_keras_round_trip(encoder, features(), atol=1e-6)
    assert float(keras.ops.convert_to_numpy(restored.logit_scale)) == pytest.approx(1.5)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored.encode_images(features()["images"])),
                               keras.ops.convert_to_numpy(encoder.encode_images(features()["images"])), atol=1e-6)
