"""A sparsified keras-hub CausalLM (Qwen-MoE with its own byte-pair tokenizer) exports through
keras-moe's SavedModel export with raw-string signatures and serves with `keras-moe serve`."""

import keras
import keras_hub
import numpy as np
import pytest

import keras_moe.hub as hub
from keras_moe.export import export_saved_model
from tests.hub.tiny import decisive

pytestmark = pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="SavedModel export needs TensorFlow")
TEXTS = ["the cat sat", "a dog ran far away from the mat"]


def byte_pair_tokenizer():
    """Qwen's tokenizer class with a tiny vocabulary: the 256 byte symbols and a few merges."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    symbols = list(bytes_to_unicode()[1])
    merges = ["t h", "th e", "a t", "Ġ c", "Ġc at"]
    merged = ["th", "the", "at", "Ġc", "Ġcat"]
    vocabulary = {token: i for i, token in enumerate(["<|endoftext|>"] + symbols + merged)}
    return keras_hub.models.QwenMoeTokenizer(vocabulary=vocabulary, merges=merges)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    keras.utils.set_random_seed(0)
    tokenizer = byte_pair_tokenizer()
    backbone = keras_hub.models.QwenMoeBackbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=2, num_query_heads=4, num_key_value_heads=2, hidden_dim=32,
        intermediate_dim=48, moe_intermediate_dim=24, shared_expert_intermediate_dim=40, num_experts=4, top_k=2,
    )
    preprocessor = keras_hub.models.QwenMoeCausalLMPreprocessor(tokenizer, sequence_length=12)
    lm = hub.sparsify(decisive(keras_hub.models.QwenMoeCausalLM(backbone, preprocessor)))
    lm.compile(sampler="greedy")
    root = tmp_path_factory.mktemp("saved")
    return lm, export_saved_model(lm, str(root), "qwen_moe"), str(root / "qwen_moe")


def test_signatures_run_the_sparse_model_on_raw_strings(exported):
    import tensorflow as tf

    lm, path, _ = exported
    served = tf.saved_model.load(path).signatures
    assert sorted(served) == ["generate", "serving_default"]
    outputs = served["serving_default"](text=tf.constant(TEXTS))
    tokens = lm.preprocessor.tokenizer(TEXTS)
    tokens = tokens.to_list() if hasattr(tokens, "to_list") else [list(map(int, ids)) for ids in tokens]
    for row, ids in enumerate(tokens):
        ids = ids[-12:]
        logits = keras.ops.convert_to_numpy(lm({"token_ids": np.array([ids], "int32"), "padding_mask": np.ones((1, len(ids)), "int32")}))
        np.testing.assert_allclose(outputs["next_token_logits"].numpy()[row], logits[0, -1], atol=1e-5)
    generated = [t.decode() for t in served["generate"](text=tf.constant(TEXTS[:1]))["generated_text"].numpy()]
    assert generated == [lm.generate(TEXTS[0], max_length=12)]


def test_keras_moe_serve_answers_for_the_sparse_model(exported):
    from tests.serving.helpers import call, running_server

    lm, path, folder = exported
    import tensorflow as tf

    expected = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(TEXTS))["next_token_ids"].numpy()
    with running_server(folder) as (base, *_):
        status, body = call(f"{base}:predict", {"instances": TEXTS})
    assert status == 200, body
    assert [p["next_token_ids"] for p in body["predictions"]] == expected.tolist()


def test_a_backbone_with_other_inputs_is_refused_with_a_reason(tmp_path):
    from tests.hub.tiny import causal_lm

    lm = hub.sparsify(causal_lm("gemma4"))
    lm.preprocessor = keras_hub.models.Gemma4CausalLMPreprocessor.__new__(keras_hub.models.Gemma4CausalLMPreprocessor)
    with pytest.raises(ValueError, match="position_ids"):
        export_saved_model(lm, str(tmp_path), "gemma4")
