"""CachedGroupedQueryAttention: numpy GQA reference, KV-cache decoding parity, argument checks."""

import numpy as np
import pytest

from keras_moe.models import CachedGroupedQueryAttention
from tests.conftest import random_tokens, to_numpy


def reference_attention(layer, hidden, mask=None):
    """Numpy grouped-query attention from the layer's own kernels (no rotary, no dropout, no biases)."""
    wq, wk, wv = (to_numpy(d.kernel) for d in (layer.query_dense, layer.key_dense, layer.value_dense))
    wo = to_numpy(layer.output_dense.kernel)
    assert not layer.query_dense.bias_axes and not layer.output_dense.bias_axes  # bias-free projections
    query = np.einsum("bqh,hnd->bqnd", hidden, wq)
    key = np.einsum("bkh,hgd->bkgd", hidden, wk)
    value = np.einsum("bkh,hgd->bkgd", hidden, wv)
    group = layer.num_heads // layer.num_kv_heads
    key, value = np.repeat(key, group, axis=2), np.repeat(value, group, axis=2)  # query head i reads kv head i // group
    scores = np.einsum("bqnd,bknd->bnqk", query, key) / np.sqrt(query.shape[-1])
    if mask is not None:
        scores = np.where(mask[:, None], scores, -np.inf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    probs = np.exp(scores)
    probs = probs / probs.sum(axis=-1, keepdims=True)
    attended = np.einsum("bnqk,bknd->bqnd", probs, value)
    return np.einsum("bqnd,ndh->bqh", attended, wo)


def causal_mask(batch, length):
    return np.broadcast_to(np.tril(np.ones((length, length), bool)), (batch, length, length)).copy()


@pytest.mark.parametrize("num_kv_heads", [1, 2, 4])
def test_gqa_matches_numpy_reference_causal(num_kv_heads):
    layer = CachedGroupedQueryAttention(num_heads=4, num_kv_heads=num_kv_heads, use_rotary=False)
    hidden = random_tokens(2, 6, 16)
    mask = causal_mask(2, 6)
    actual = to_numpy(layer(hidden, attention_mask=mask))
    assert layer.key_dense.kernel.shape == (16, num_kv_heads, 4)
    np.testing.assert_allclose(actual, reference_attention(layer, hidden, mask), rtol=1e-5, atol=1e-5)


def test_gqa_matches_numpy_reference_bidirectional_and_padded():
    layer = CachedGroupedQueryAttention(num_heads=4, num_kv_heads=2, use_rotary=False)
    hidden = random_tokens(2, 6, 16)
    np.testing.assert_allclose(to_numpy(layer(hidden)), reference_attention(layer, hidden), rtol=1e-5, atol=1e-5)
    padding = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]], bool)
    mask = np.broadcast_to(padding[:, None, :], (2, 6, 6)).copy()
    np.testing.assert_allclose(
        to_numpy(layer(hidden, attention_mask=mask)), reference_attention(layer, hidden, mask), rtol=1e-5, atol=1e-5
    )


def test_causal_output_ignores_future_positions():
    layer = CachedGroupedQueryAttention(num_heads=4, num_kv_heads=2, use_rotary=True)
    hidden = random_tokens(2, 6, 16)
    changed = hidden.copy()
    changed[:, 4:] += 10.0
    mask = causal_mask(2, 6)
    before, after = to_numpy(layer(hidden, attention_mask=mask)), to_numpy(layer(changed, attention_mask=mask))
    np.testing.assert_allclose(after[:, :4], before[:, :4], rtol=1e-5, atol=1e-6)
    assert not np.allclose(after[:, 4:], before[:, 4:])


def test_rotary_changes_the_output():
    plain = CachedGroupedQueryAttention(num_heads=4, num_kv_heads=2, use_rotary=False)
    hidden = random_tokens(2, 6, 16)
    mask = causal_mask(2, 6)
    expected = to_numpy(plain(hidden, attention_mask=mask))
    rotary = CachedGroupedQueryAttention(num_heads=4, num_kv_heads=2, use_rotary=True)
    rotary.build(hidden.shape)
    rotary.set_weights(plain.get_weights())
    actual = to_numpy(rotary(hidden, attention_mask=mask))
    np.testing.assert_allclose(actual[:, 0], expected[:, 0], rtol=1e-5, atol=1e-6)  # position 0 sees only itself
    assert not np.allclose(actual[:, 1:], expected[:, 1:], atol=1e-4)


def test_token_by_token_cache_equals_full_causal_pass():
    num_kv_heads, head_dim = 2, 4
    layer = CachedGroupedQueryAttention(num_heads=4, num_kv_heads=num_kv_heads, use_rotary=True)
    batch, length, hidden_dim = 2, 6, 16
    hidden = random_tokens(batch, length, hidden_dim)
    full = to_numpy(layer(hidden, attention_mask=causal_mask(batch, length)))
    cache = np.zeros((batch, 2, length, num_kv_heads, head_dim), "float32")
    steps = []
    for i in range(length):
        mask = np.broadcast_to(np.arange(length) <= i, (batch, 1, length))  # keys written so far
        output, cache = layer(hidden[:, i : i + 1], attention_mask=mask, cache=cache, cache_update_index=i)
        assert tuple(cache.shape) == (batch, 2, length, num_kv_heads, head_dim)
        steps.append(to_numpy(output))
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=1e-5, atol=1e-5)
    # The final cache holds the rotated keys and the values of every position.
    key = to_numpy(layer.rotary(layer.key_dense(hidden)))
    np.testing.assert_allclose(to_numpy(cache)[:, 0], key, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(to_numpy(cache)[:, 1], to_numpy(layer.value_dense(hidden)), rtol=1e-5, atol=1e-5)


def test_prefill_then_decode_equals_full_pass():
    layer = CachedGroupedQueryAttention(num_heads=4, num_kv_heads=2, use_rotary=True)
    batch, length, prompt = 2, 6, 3
    hidden = random_tokens(batch, length, 16)
    full = to_numpy(layer(hidden, attention_mask=causal_mask(batch, length)))
    cache = np.zeros((batch, 2, length, 2, 4), "float32")
    prefill_mask = np.broadcast_to(np.arange(length)[None, :] <= np.arange(prompt)[:, None], (batch, prompt, length))
    output, cache = layer(hidden[:, :prompt], attention_mask=prefill_mask, cache=cache, cache_update_index=0)
    outputs = [to_numpy(output)]
    for i in range(prompt, length):
        mask = np.broadcast_to(np.arange(length) <= i, (batch, 1, length))
        output, cache = layer(hidden[:, i : i + 1], attention_mask=mask, cache=cache, cache_update_index=i)
        outputs.append(to_numpy(output))
    np.testing.assert_allclose(np.concatenate(outputs, axis=1), full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_heads=4, num_kv_heads=3), "num_kv_heads=3"),
    (dict(num_heads=0, num_kv_heads=1), "num_heads=0"),
    (dict(num_heads=2, num_kv_heads=-1), "num_kv_heads=-1"),
    (dict(num_heads=2, num_kv_heads=1, rope_max_wavelength=0), "rope_max_wavelength=0"),
])
def test_invalid_arguments_name_the_value(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CachedGroupedQueryAttention(**kwargs)


def test_hidden_dim_must_divide_by_heads():
    layer = CachedGroupedQueryAttention(num_heads=3, num_kv_heads=1)
    with pytest.raises(ValueError, match=r"\(8\).*\(3\)"):
        layer.build((None, 4, 8))
