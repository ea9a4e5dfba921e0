"""Dropless dispatch equals the dense oracle, in values and in gradients."""

import keras
import numpy as np
import pytest

from keras_moe.dispatch import dropless_dispatch
from tests.conftest import random_tokens, to_numpy
from tests.dispatch.oracle import (
    HIDDEN,
    NUM_EXPERTS,
    assert_per_token_and_permutation_equivariant,
    distinct_choices,
    keras_oracle,
    make_bank,
    mask_dtype_params,
    np_oracle,
    value_and_grads,
)

T, K = 6, 2


@pytest.mark.parametrize("use_bias", [False, True])
@pytest.mark.parametrize("top_k", [1, 2, 4])
def test_dropless_equals_oracle(use_bias, top_k):
    bank = make_bank(use_bias=use_bias)
    tokens = random_tokens(T, HIDDEN, seed=1)
    index, weight = distinct_choices(T, NUM_EXPERTS, top_k, seed=top_k)
    outputs, kept = dropless_dispatch(tokens, index, weight, bank)
    assert to_numpy(kept).shape == (T, top_k) and to_numpy(kept).all()
    np.testing.assert_allclose(to_numpy(outputs), np_oracle(bank, tokens, index, weight), rtol=1e-5, atol=1e-5)


def test_dropless_with_unused_experts_and_relu():
    bank = make_bank(activation="relu", use_bias=True)
    tokens = random_tokens(5, HIDDEN, seed=2)
    index = np.array([[2, 0], [2, 0], [0, 2], [2, 0], [0, 2]], "int32")  # experts 1 and 3 get nothing
    weight = np.random.default_rng(0).uniform(0.1, 1.0, (5, 2)).astype("float32")
    outputs, _ = dropless_dispatch(tokens, index, weight, bank)
    np.testing.assert_allclose(to_numpy(outputs), np_oracle(bank, tokens, index, weight), rtol=1e-5, atol=1e-5)


def test_dropless_gradients_equal_oracle():
    bank = make_bank(use_bias=True)
    tokens = random_tokens(T, HIDDEN, seed=1)
    index, weight = distinct_choices(T, NUM_EXPERTS, K, seed=2)
    cotangent = random_tokens(T, HIDDEN, seed=3)
    out, grads = value_and_grads(lambda x, w: dropless_dispatch(x, index, w, bank)[0], bank, tokens, weight, cotangent)
    ref_out, ref_grads = value_and_grads(lambda x, w: keras_oracle(bank, x, index, w), bank, tokens, weight, cotangent)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    assert len(grads) == 2 + len(bank.trainable_variables)
    for grad, ref in zip(grads, ref_grads):
        assert np.abs(ref).max() > 0
        np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-5)


def test_dropless_mask_gives_padding_zero_output():
    bank = make_bank(use_bias=True)
    tokens = random_tokens(T, HIDDEN, seed=4)
    index, weight = distinct_choices(T, NUM_EXPERTS, K, seed=5)  # padding keeps non-zero weights here
    mask = np.array([1, 0, 1, 1, 0, 1], "float32")
    outputs, kept = dropless_dispatch(tokens, index, weight, bank, mask=mask)
    outputs, kept = to_numpy(outputs), to_numpy(kept)
    np.testing.assert_array_equal(kept, np.repeat(mask[:, None] > 0, K, axis=1))
    np.testing.assert_array_equal(outputs[mask == 0], 0.0)
    valid = mask > 0
    np.testing.assert_allclose(
        outputs[valid], np_oracle(bank, tokens[valid], index[valid], weight[valid]), rtol=1e-5, atol=1e-5
    )


def test_dropless_is_per_token_and_permutation_equivariant():
    assert_per_token_and_permutation_equivariant(dropless_dispatch)


def test_dropless_in_a_traced_function():
    """jax.jit under JAX; a (non-XLA) tf.function graph under TensorFlow, since tf.split needs dynamic sizes."""
    bank = make_bank(use_bias=True)
    tokens = random_tokens(T, HIDDEN, seed=1)
    index, weight = distinct_choices(T, NUM_EXPERTS, K, seed=2)
    mask = np.array([1, 1, 0, 1, 1, 1], "float32")

    def run(x, i, w, m):
        return dropless_dispatch(x, i, w, bank, mask=m)[0]

    if keras.backend.backend() == "jax":
        import jax

        traced = jax.jit(run)
    else:
        import tensorflow as tf

        traced = tf.function(run, autograph=False)
    expected = np_oracle(bank, tokens, index, weight * mask[:, None])
    np.testing.assert_allclose(to_numpy(traced(tokens, index, weight, mask)), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", mask_dtype_params())
def test_dropless_accepts_any_mask_dtype(dtype):
    bank = make_bank()
    tokens = random_tokens(4, HIDDEN, seed=8)
    index, weight = distinct_choices(4, NUM_EXPERTS, K, seed=9)
    mask = np.array([1, 0, 1, 1]).astype(dtype)
    outputs, kept = dropless_dispatch(tokens, index, weight, bank, mask=mask)
    np.testing.assert_array_equal(to_numpy(kept)[:, 0], mask.astype(bool))
    expected = np_oracle(bank, tokens, index, weight * mask.astype("float32")[:, None])
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-5, atol=1e-5)
