"""MoECausalLM: KV-cache generation against the uncached oracle, string generation, samplers, fit, saving."""

import os
import tempfile

import keras
import keras_hub
import numpy as np
import pytest

from keras_moe.models import MoECausalLM, MoECausalLMPreprocessor, MoETransformerBackbone
from tests.conftest import to_numpy

TINY = dict(vocabulary_size=256, num_layers=2, num_heads=2, num_kv_heads=1, hidden_dim=16, intermediate_dim=16, num_experts=4)


def tiny_lm(preprocessor=True, sequence_length=16, **overrides):
    backbone = MoETransformerBackbone(**{**TINY, **overrides})
    return MoECausalLM(backbone, MoECausalLMPreprocessor(sequence_length=sequence_length) if preprocessor else None)


def prompts(batch=2, max_length=8, prompt_length=3, seed=0):
    token_ids = np.zeros((batch, max_length), "int32")
    token_ids[:, :prompt_length] = np.random.default_rng(seed).integers(1, 256, (batch, prompt_length))
    padding_mask = np.broadcast_to(np.arange(max_length) < prompt_length, (batch, max_length)).copy()
    return token_ids, padding_mask


@pytest.mark.parametrize("overrides", [
    dict(dispatch="dropless"),
    dict(dispatch="dropless", num_kv_heads=2, position_embedding="learned", max_sequence_length=16, tie_embeddings=True),
    dict(dispatch="dropless", num_layers=3, num_dense_layers=1, num_shared_experts=1, normalization="layer"),
    dict(dispatch="capacity", eval_capacity_factor=16.0),
], ids=["dropless", "dropless_mha_learned_tied", "dropless_dense_first_shared", "capacity_large_factor"])
def test_cached_greedy_generation_equals_uncached_oracle(overrides):
    lm = tiny_lm(preprocessor=False, **overrides)
    lm.compile(sampler="greedy")
    token_ids, padding_mask = prompts()
    cached = lm.generate_step({"token_ids": token_ids, "padding_mask": padding_mask})
    expected = lm.generate_without_cache(token_ids, padding_mask, max_new_tokens=5)
    np.testing.assert_array_equal(expected[:, :3], token_ids[:, :3])  # the prompt is kept
    np.testing.assert_array_equal(to_numpy(cached["token_ids"]), expected)
    assert to_numpy(cached["padding_mask"]).all()  # no stop tokens: every position is real


def test_uncached_oracle_keeps_ragged_prompts():
    lm = tiny_lm(preprocessor=False, dispatch="dropless")
    lm.compile(sampler="greedy")
    token_ids, padding_mask = prompts()
    token_ids[1, 3:5], padding_mask[1, 3:5] = [65, 66], True  # row 1 has a 5-token prompt
    cached = to_numpy(lm.generate_step({"token_ids": token_ids, "padding_mask": padding_mask})["token_ids"])
    np.testing.assert_array_equal(cached[1, :5], token_ids[1, :5])  # the sampler keeps the longer prompt
    expected = lm.generate_without_cache(token_ids, padding_mask, max_new_tokens=5)
    np.testing.assert_array_equal(expected[1, :5], token_ids[1, :5])
    np.testing.assert_array_equal(cached, expected)


@pytest.mark.parametrize("overrides", [dict(dispatch="dropless"), dict(position_embedding="learned", max_sequence_length=16)],
                         ids=["rotary", "learned"])
def test_call_with_cache_logits_equal_full_forward(overrides):
    lm = tiny_lm(preprocessor=False, **overrides)
    token_ids = np.random.default_rng(1).integers(1, 256, (2, 8)).astype("int32")
    full = to_numpy(lm({"token_ids": token_ids, "padding_mask": np.ones_like(token_ids)}))
    cache = np.zeros((2, 2, 2, 8, 1, 8), "float32")  # [b, layers, key/value, max_length, kv heads, head dim]
    steps = []
    for i in range(8):  # one position at a time (the prefill path is what generate_step uses)
        logits, hidden, cache = lm.call_with_cache(token_ids[:, i : i + 1], cache, i)
        assert tuple(hidden.shape) == (2, 1, 16)
        steps.append(to_numpy(logits))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-4, atol=1e-4)


def test_generate_string_with_greedy_sampler():
    lm = tiny_lm()
    lm.compile(sampler="greedy")
    output = lm.generate("To be", max_length=12)
    assert isinstance(output, str) and output.startswith("To be")
    assert len(output.encode("utf-8", errors="surrogateescape")) > len("To be")  # something was generated
    assert lm.generate("To be", max_length=12) == output  # greedy is deterministic


@pytest.mark.parametrize("sampler", [
    lambda: keras_hub.samplers.TopKSampler(k=5, seed=1),
    lambda: keras_hub.samplers.TopPSampler(p=0.9, seed=1),
], ids=["top_k", "top_p"])
def test_sampling_generation_runs(sampler):
    lm = tiny_lm()
    lm.compile(sampler=sampler())
    outputs = lm.generate(["To be", "or not"], max_length=12)  # a batch of strings in, a list out
    assert isinstance(outputs, list) and len(outputs) == 2
    assert outputs[0].startswith("To be") and outputs[1].startswith("or not")


def test_fit_on_raw_strings():
    lm = tiny_lm(sequence_length=12)
    lm.compile(optimizer=keras.optimizers.Adam(1e-3), sampler="greedy")
    text = ["to be or not to be", "that is the question", "whether tis nobler", "in the mind to suffer"]
    before = [w.copy() for w in lm.get_weights()]
    history = lm.fit(text, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert 0 < history.history["loss"][0] < 10  # about ln(256) = 5.5 for an untrained byte model
    assert any(not np.array_equal(a, b) for a, b in zip(before, lm.get_weights()))


def test_preprocessor_packs_bytes_and_shifts_labels():
    preprocessor = MoECausalLMPreprocessor(sequence_length=6)
    x, y, sample_weight = preprocessor(["abc"])
    np.testing.assert_array_equal(to_numpy(x["token_ids"]), [[97, 98, 99, 0, 0, 0]])
    np.testing.assert_array_equal(to_numpy(x["padding_mask"]), [[1, 1, 1, 0, 0, 0]])
    np.testing.assert_array_equal(to_numpy(y), [[98, 99, 0, 0, 0, 0]])
    np.testing.assert_array_equal(to_numpy(sample_weight), [[1, 1, 0, 0, 0, 0]])


def test_keras_save_load_keeps_outputs_and_generation():
    lm = tiny_lm()
    lm.compile(sampler="greedy")
    token_ids, padding_mask = prompts()
    x = {"token_ids": token_ids, "padding_mask": padding_mask.astype("int32")}
    expected = to_numpy(lm(x))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lm.keras")
        lm.save(path)
        restored = keras.models.load_model(path)
    assert isinstance(restored, MoECausalLM) and isinstance(restored.preprocessor, MoECausalLMPreprocessor)
    np.testing.assert_array_equal(to_numpy(restored(x)), expected)
    restored.compile(sampler="greedy")
    output = restored.generate("To be", max_length=12)
    assert isinstance(output, str) and output.startswith("To be")


def test_rejects_encoder_backbone():
    backbone = MoETransformerBackbone(**TINY, causal=False)
    with pytest.raises(ValueError, match="causal=False"):
        MoECausalLM(backbone)
