"""The three multimodal forms on tiny synthetic inputs: a training step, gate weights, save/load,
the serving signature (raw uint8 images / PNG bytes and names) and its errors on bad inputs."""


import keras
import keras_hub
import numpy as np
import pytest

from keras_moe.layers import ModalityMoELayer
from keras_moe.models import MoETransformerBlock
from keras_moe.models.multimodal import (
    ModalityDropout,
    MultimodalClassifierPreprocessor,
    MultimodalGateNetwork,
    MultimodalMixtureClassifier,
    MultimodalMoEBackbone,
    MultimodalMoEClassifier,
    PatchEmbedding,
    image_expert,
    text_expert,
)
from tests.contracts import assert_config_complete, assert_keras_round_trip

IMAGE, LENGTH, VOCABULARY, CLASSES = 8, 5, 12, 3
WORDS = ["red", "apple", "face", "flag", "cat", "grinning", "dog"]


def features(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    padding = (np.arange(LENGTH)[None] < rng.integers(1, LENGTH + 1, (batch, 1))).astype("int32")
    return {"images": rng.random((batch, IMAGE, IMAGE, 3)).astype("float32"),
            "token_ids": (rng.integers(1, VOCABULARY, (batch, LENGTH)) * padding).astype("int32"), "padding_mask": padding}


LABELS = np.array([0, 1, 2, 1])


def backbone(**kwargs):
    config = dict(vocabulary_size=VOCABULARY, sequence_length=LENGTH, image_size=IMAGE, patch_size=4, num_layers=2, num_heads=2,
                  hidden_dim=8, intermediate_dim=8, num_experts=4, stem_filters=[4])
    return MultimodalMoEBackbone(**{**config, **kwargs})


def moe_classifier(**kwargs):
    return MultimodalMoEClassifier(backbone(**kwargs), num_classes=CLASSES, class_names=["a", "b", "c"])


def mixture_classifier(objective="likelihood", experts=("image", "text"), **kwargs):
    built = {"image": image_expert(IMAGE, CLASSES, filters=(4,)), "text": text_expert(VOCABULARY, LENGTH, CLASSES, hidden_dim=4)}
    return MultimodalMixtureClassifier({k: built[k] for k in experts}, CLASSES, objective=objective, image_size=IMAGE,
                                       sequence_length=LENGTH, gate_network=MultimodalGateNetwork(VOCABULARY, 4, 4),
                                       class_names=["a", "b", "c"], **kwargs)


FORMS = {
    "limoe": lambda: moe_classifier(local_entropy_loss_weight=0.01, global_entropy_loss_weight=0.01, modality_dropout=0.3),
    "modality_experts": lambda: moe_classifier(expert_modalities=["text", "text", "image", "image"], num_shared_experts=1),
    "mixture_likelihood": lambda: mixture_classifier("likelihood"),
    "mixture_per_expert": lambda: mixture_classifier("per_expert"),
    "mixture_separate_geometric": lambda: mixture_classifier("separate", combination="geometric", gate_smoothing=0.2,
                                                             expert_dropout=0.3),
    "image_only": lambda: moe_classifier(modalities=["image"]),
    "text_only": lambda: moe_classifier(modalities=["text"]),
    "image_expert": lambda: mixture_classifier(experts=("image",)),
    "text_expert": lambda: mixture_classifier(experts=("text",)),
}


def compile_model(model):
    """The task's own loss and metrics (`"auto"`: the objective's loss for the mixtures)."""
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    return model


def logits_of(model, x):
    outputs = model(x, training=False)
    return keras.ops.convert_to_numpy(outputs["logits"] if isinstance(outputs, dict) else outputs)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_each_form_learns_a_tiny_batch(form):
    model = compile_model(FORMS[form]())
    before = model.evaluate(features(), LABELS, verbose=0, return_dict=True)["loss"]
    history = model.fit(features(), LABELS, batch_size=4, epochs=15, verbose=0)
    after = model.evaluate(features(), LABELS, verbose=0, return_dict=True)["loss"]
    assert np.all(np.isfinite(history.history["loss"])) and after < 0.95 * before, (before, after)
    logits = logits_of(model, features())
    assert logits.shape == (4, CLASSES) and np.all(np.isfinite(logits))


@pytest.mark.parametrize("objective", ["likelihood", "per_expert"])
def test_gate_weights_sum_to_one_and_mix_the_expert_probabilities(objective):
    model = mixture_classifier(objective)
    x = features()
    gates = keras.ops.convert_to_numpy(model.gate_weights(x))
    assert gates.shape == (4, 2) and np.all(gates >= 0)
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, atol=1e-6)
    image = keras.ops.convert_to_numpy(model.experts["image"](x["images"], training=False))
    text = keras.ops.convert_to_numpy(model.experts["text"](x["token_ids"], training=False))
    expected = gates[:, :1] * image + gates[:, 1:] * text
    np.testing.assert_allclose(np.exp(logits_of(model, x)), expected, atol=1e-5)
    outputs = model(x, training=False)  # one pass gives the gate weights and the experts' probabilities too
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs["gate_weights"]), gates, atol=1e-6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(outputs["expert_probabilities"]), np.stack([image, text], 1), atol=1e-6)


@pytest.mark.parametrize("smoothing", [0.0, 0.4])
def test_geometric_combination_is_the_gated_product_of_the_experts(smoothing):
    model = mixture_classifier("separate", combination="geometric", gate_smoothing=smoothing)
    x = features()
    gates = keras.ops.convert_to_numpy(model.gate_weights(x))
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(gates >= smoothing / 2 - 1e-6)
    image = keras.ops.convert_to_numpy(model.experts["image"](x["images"], training=False))
    text = keras.ops.convert_to_numpy(model.experts["text"](x["token_ids"], training=False))
    product = image ** gates[:, :1] * text ** gates[:, 1:]
    np.testing.assert_allclose(np.exp(logits_of(model, x)), product / product.sum(1, keepdims=True), atol=1e-5)


def test_separate_objective_is_each_experts_own_loss_plus_the_combined_loss():
    model = compile_model(mixture_classifier("separate", combination="geometric"))
    x = features()
    gates = keras.ops.convert_to_numpy(model.gate_weights(x))
    image = keras.ops.convert_to_numpy(model.experts["image"](x["images"], training=False))
    text = keras.ops.convert_to_numpy(model.experts["text"](x["token_ids"], training=False))
    combined = image ** gates[:, :1] * text ** gates[:, 1:]
    combined /= combined.sum(1, keepdims=True)
    rows = np.arange(4)
    expected = np.mean(-np.log(image[rows, LABELS]) - np.log(text[rows, LABELS]) - np.log(combined[rows, LABELS]))
    loss = model.evaluate(x, LABELS, verbose=0, return_dict=True)["loss"]
    assert abs(loss - expected) < 1e-4


def _deterministic_experts():
    image = keras.Sequential([keras.Input((IMAGE, IMAGE, 3)), keras.layers.Flatten(), keras.layers.Dense(CLASSES, activation="softmax")],
                             name="image_expert")
    text = keras.Sequential([keras.Input((LENGTH,), dtype="int32"), keras.layers.Embedding(VOCABULARY, 4),
                             keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(CLASSES, activation="softmax")],
                            name="text_expert")
    return {"image": image, "text": text}


@pytest.mark.parametrize("combination", ["arithmetic", "geometric"])
def test_separate_objective_trains_each_expert_exactly_as_if_alone(combination):
    """The gate's loss reaches the experts through `stop_gradient` only: one SGD step moves every
    expert weight as training that expert alone on its cross-entropy does."""
    experts = _deterministic_experts()
    alone = {key: keras.models.clone_model(model) for key, model in experts.items()}
    for key in experts:
        alone[key].set_weights(experts[key].get_weights())
    model = MultimodalMixtureClassifier(experts, CLASSES, objective="separate", combination=combination, image_size=IMAGE,
                                        sequence_length=LENGTH, gate_network=MultimodalGateNetwork(VOCABULARY, 4, 4))
    model.compile(optimizer=keras.optimizers.SGD(0.5))
    x = features()
    gates_before = keras.ops.convert_to_numpy(model.gate_weights(x))
    model.fit(x, LABELS, batch_size=4, epochs=1, verbose=0)
    for key, inputs in (("image", x["images"]), ("text", x["token_ids"])):
        alone[key].compile(optimizer=keras.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
        alone[key].fit(inputs, LABELS, batch_size=4, epochs=1, verbose=0)
        for mixed, single in zip(experts[key].get_weights(), alone[key].get_weights()):
            np.testing.assert_allclose(mixed, single, atol=1e-5)
    assert not np.allclose(keras.ops.convert_to_numpy(model.gate_weights(x)), gates_before)  # the gate learned


class CountingCalls(keras.layers.Layer):
    """Identity that counts its eager calls (a Python side effect, so only with `run_eagerly=True`)."""

    calls = 0

    def call(self, x):
        CountingCalls.calls += 1
        return x


def test_the_objective_loss_comes_from_the_same_forward_pass():
    experts = _deterministic_experts()
    counted = keras.Sequential([keras.Input((IMAGE, IMAGE, 3)), CountingCalls(), experts["image"]], name="counted")
    model = MultimodalMixtureClassifier({"image": counted, "text": experts["text"]}, CLASSES, objective="separate",
                                        image_size=IMAGE, sequence_length=LENGTH, gate_network=MultimodalGateNetwork(VOCABULARY, 4, 4))
    model.compile(optimizer="sgd", run_eagerly=True)
    model.train_on_batch(features(), LABELS)  # the first step may also build (a symbolic call) on some backends
    CountingCalls.calls = 0
    model.train_on_batch(features(), LABELS)
    assert CountingCalls.calls == 1  # the loss reads the outputs of the step's one forward pass


def test_an_explicit_compile_loss_is_respected():
    model = mixture_classifier("separate")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = features()
    expected = np.mean(-keras.ops.convert_to_numpy(keras.ops.log_softmax(logits_of(model, x)))[np.arange(4), LABELS])
    assert model.evaluate(x, LABELS, verbose=0, return_dict=True)["loss"] == pytest.approx(expected, abs=1e-5)
    model.compile(optimizer="sgd")  # back to the objective's loss: a different value
    assert abs(model.evaluate(x, LABELS, verbose=0, return_dict=True)["loss"] - expected) > 1e-2


def test_per_expert_objective_is_the_gate_weighted_expert_losses():
    model = compile_model(mixture_classifier("per_expert"))
    x = features()
    gates = keras.ops.convert_to_numpy(model.gate_weights(x))
    per_expert = []
    for key, inputs in (("image", x["images"]), ("text", x["token_ids"])):
        p = keras.ops.convert_to_numpy(model.experts[key](inputs, training=False))
        per_expert.append(-np.log(p[np.arange(4), LABELS]))
    expected = np.mean(gates[:, 0] * per_expert[0] + gates[:, 1] * per_expert[1])
    loss = model.evaluate(x, LABELS, verbose=0, return_dict=True)["loss"]
    assert abs(loss - expected) < 1e-4


def test_modality_experts_route_by_modality_inside_the_model():
    model = moe_classifier(expert_modalities=["text", "text", "image", "image"])
    model(features(), training=False)
    for layer in model.backbone.moe_layers:
        counts = keras.ops.convert_to_numpy(layer.modality_stats.counts())
        assert counts[0, 2:].sum() == 0 and counts[1, :2].sum() == 0 and counts.sum() > 0


def test_modality_dropout_hides_at_most_one_modality_per_example():
    layer = ModalityDropout(0.5, seed=1)
    modality = np.array([[1, 1, 0, 0, 0]] * 64)
    mask = keras.ops.convert_to_numpy(layer(np.ones((64, 5)), modality, training=True))
    image_kept, text_kept = mask[:, 0] > 0, mask[:, 2] > 0
    assert np.all(image_kept | text_kept) and (~image_kept).any() and (~text_kept).any()
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(np.ones((64, 5)), modality)), 1.0)


def test_backbone_parameter_count_matches_keras_and_hand_arithmetic():
    for kwargs in ({}, {"expert_modalities": ["text", "text", "image", "any"], "num_shared_experts": 1}, {"modalities": ["text"]},
                   {"modalities": ["image"], "num_experts": 0}):
        model = backbone(**kwargs)
        assert MultimodalMoEBackbone.parameter_count(**model.get_config())["total"] == model.count_params(), kwargs
    # Text only, h = 8, 2 blocks of 4 GELU experts (f = 8), top-1: by hand.
    embeddings = 2 * 8 + 2 * 8 + (VOCABULARY + LENGTH) * 8  # modality embedding, final LayerNorm, tokens and positions
    block_fixed = 4 * 8 * 8 + 2 * 2 * 8  # q, k, v, o and two LayerNorms
    experts, router = 4 * (8 * 8 + 8 * 8), 8 * 4
    counts = MultimodalMoEBackbone.parameter_count(**backbone(modalities=["text"]).get_config())
    assert counts == {"total": embeddings + 2 * (block_fixed + experts + router),
                      "active": embeddings + 2 * (block_fixed + experts // 4 + router)}


@pytest.mark.parametrize("layer", [
    PatchEmbedding(8, 4, 8, stem_filters=[4]),
    ModalityDropout(0.2, seed=3),
    MoETransformerBlock(2, 2, ModalityMoELayer(4, 8, router={"class_name": "top_k", "config": {"top_k": 1}},
                                               expert_modalities=[0, 0, 1, 1]), causal=False, use_rotary=False, dropout=0.1),
    MultimodalGateNetwork(20, 8, 4, dropout=0.1),
], ids=lambda layer: type(layer).__name__)
def test_layer_configs_are_complete(layer):
    assert_config_complete(layer)


@pytest.mark.parametrize("form", ["limoe", "modality_experts", "mixture_per_expert", "mixture_separate_geometric"])
def test_keras_save_load_parity(form):
    model = FORMS[form]()
    restored = assert_keras_round_trip(model, features(), atol=1e-6)
    assert restored.class_names == ["a", "b", "c"]


def tiny_preprocessor():
    vocabulary = ["[PAD]", "[UNK]"] + WORDS + ["##s", "##e"]
    tokenizer = keras_hub.tokenizers.WordPieceTokenizer(vocabulary=vocabulary, lowercase=True, oov_token="[UNK]")
    return MultimodalClassifierPreprocessor(tokenizer, sequence_length=LENGTH, image_size=IMAGE)


def raw_inputs(batch=3, size=12, channels=4):
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (batch, size, size, channels)).astype("uint8")
    return images, np.array(["red apple", "grinning cat face", "flag: Dogs"][:batch])


tf_only = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel export needs the TensorFlow backend")


@tf_only
@pytest.mark.parametrize("form", ["limoe", "modality_experts", "mixture_likelihood", "mixture_separate_geometric"])
def test_saved_model_serves_raw_images_and_names_like_the_keras_model(form, tmp_path):
    import tensorflow as tf

    from keras_moe.export import export_saved_model

    model = FORMS[form]()
    model.preprocessor = tiny_preprocessor()
    images, names = raw_inputs()
    expected = tf.nn.softmax(logits_of(model, model.preprocessor({"images": images, "names": names}))).numpy()
    path = export_saved_model(model, str(tmp_path), "mm")
    served = tf.saved_model.load(path).signatures
    outputs = served["serving_default"](images=tf.constant(images), names=tf.constant(names))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    assert [s.decode() for s in outputs["labels"].numpy()] == [["a", "b", "c"][i] for i in expected.argmax(1)]
    if form.startswith("mixture"):
        np.testing.assert_allclose(outputs["gate_weights"].numpy().sum(axis=1), 1.0, atol=1e-5)
    png = tf.stack([tf.io.encode_png(tf.constant(image)) for image in images])
    from_png = served["serve_png"](png_bytes=png, names=tf.constant(names))
    np.testing.assert_allclose(from_png["probabilities"].numpy(), expected, atol=1e-5)  # same size: lossless round trip
    rgb = served["serving_default"](images=tf.constant(images[..., :3]), names=tf.constant(names))
    assert rgb["probabilities"].shape == (3, CLASSES)
    big = served["serving_default"](images=tf.constant(np.repeat(np.repeat(images, 3, 1), 3, 2)), names=tf.constant(names))
    assert big["probabilities"].shape == (3, CLASSES)


@tf_only
def test_serving_rejects_bad_inputs_with_clear_messages(tmp_path):
    import tensorflow as tf

    from keras_moe.export import export_saved_model

    model = FORMS["limoe"]()
    model.preprocessor = tiny_preprocessor()
    serve = tf.saved_model.load(export_saved_model(model, str(tmp_path), "mm")).signatures["serving_default"]
    images, names = raw_inputs()
    cases = [
        (images[..., :2], names, "3 \\(RGB\\) or 4 \\(RGBA\\) channels"),
        (np.zeros((3, 0, 12, 4), "uint8"), names, "height and width of at least 1"),
        (images[:2], names, "same number of examples"),
        (images, np.array(["red", "", "cat"]), "non-empty string"),
        (images, np.array([b"red", b"\xff\xfe", b"cat"], dtype=object), "UTF-8"),
    ]
    for bad_images, bad_names, message in cases:
        with pytest.raises(tf.errors.InvalidArgumentError, match=message):
            serve(images=tf.constant(bad_images), names=tf.constant(bad_names))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[batch, height, width, channels\]; received shape"):
        serve(images=tf.constant(images[0]), names=tf.constant(names))  # rank 3


@tf_only
def test_served_routing_is_the_models_own_routing(tmp_path):
    import tensorflow as tf

    from keras_moe.export import export_saved_model

    model = FORMS["modality_experts"]()
    model.preprocessor = tiny_preprocessor()
    images, names = raw_inputs()
    served = tf.saved_model.load(export_saved_model(model, str(tmp_path), "mm")).signatures["routing"]
    outputs = served(images=tf.constant(images), names=tf.constant(names))
    inputs = model.preprocessor({"images": images, "names": names})
    _, _, routings = model.backbone.call_with_routing(inputs)
    seq = model.backbone.num_patches + LENGTH
    np.testing.assert_array_equal(outputs["modality_ids"].numpy(), [1] * model.backbone.num_patches + [0] * LENGTH)
    for name, routing in routings.items():
        ids, weights = (keras.ops.convert_to_numpy(v).reshape(3, seq, -1) for v in routing.decisions())
        np.testing.assert_array_equal(outputs[f"{name}_expert_ids"].numpy(), ids)
        np.testing.assert_allclose(outputs[f"{name}_expert_weights"].numpy(), weights, atol=1e-6)
        text_ids = ids[:, model.backbone.num_patches:]  # text tokens only reach the text experts (0, 1)
        assert set(np.unique(text_ids)) <= {0, 1}


def test_image_augmentation_acts_only_when_training_and_round_trips():
    model = backbone(image_augmentation=0.25, dropout=0.0)
    x = features()
    plain = backbone(dropout=0.0)
    plain.set_weights(model.get_weights())  # augmentation layers have no weights: the same model without them
    inference = keras.ops.convert_to_numpy(model(x, training=False)["sequence_output"])
    np.testing.assert_allclose(inference, keras.ops.convert_to_numpy(plain(x, training=False)["sequence_output"]), atol=1e-6)
    trained = keras.ops.convert_to_numpy(model(x, training=True)["sequence_output"])
    patches = model.num_patches
    assert np.abs(trained[:, :patches] - inference[:, :patches]).max() > 1e-3  # the image tokens moved
    assert MultimodalMoEBackbone.from_config(model.get_config()).image_augmentation == 0.25


@pytest.mark.parametrize("kwargs, message", [
    ({"image_augmentation": 1.5}, "image_augmentation"),
    ({"image_augmentation": 0.1, "modalities": ["text"]}, "needs the image modality"),
])
def test_image_augmentation_is_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        backbone(**kwargs)
