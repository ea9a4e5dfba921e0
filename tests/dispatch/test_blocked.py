"""Blocked dispatch (static-shape dropless): outputs and gradients equal the reference, with and
without skipping the padding blocks no row reached, eager and compiled."""

import keras
import numpy as np
import pytest
from keras import ops

from keras_moe.dispatch import blocked
from keras_moe.dispatch.blocked import block_size_for, blocked_dispatch, num_blocks, run_used_blocks, tail_chunks
from tests.conftest import random_tokens, to_numpy
from tests.dispatch.oracle import (
    HIDDEN,
    NUM_EXPERTS,
    compiled,
    distinct_choices,
    keras_oracle,
    make_bank,
    np_oracle,
    value_and_grads,
)

T = 12


def routings():
    """Spread choices (tail blocks used), every token on experts 0 and 1 (no tail block used), one
    expert for all (top-1, the least padding)."""
    spread, weight = distinct_choices(T, NUM_EXPERTS, 2, seed=3)
    crowded = np.tile(np.array([[0, 1]], "int32"), (T, 1))
    single = np.zeros((T, 1), "int32")
    return {"spread": (spread, weight), "crowded": (crowded, weight), "single": (single, weight[:, :1])}


@pytest.mark.parametrize("skip_unused", [False, True])
@pytest.mark.parametrize("routing", ["spread", "crowded", "single"])
@pytest.mark.parametrize("run", ["eager", "compiled", "graph"])
def test_blocked_equals_oracle(routing, skip_unused, run):
    bank = make_bank(use_bias=True)  # biases: a padding block that ran would give non-zero rows
    tokens = random_tokens(T, HIDDEN, seed=1)
    index, weight = routings()[routing]

    def dispatch(x):
        return blocked_dispatch(x, index, weight, bank, block_size=4, skip_unused=skip_unused)

    outputs, kept = {"eager": dispatch, "compiled": compiled(dispatch), "graph": graph(dispatch)}[run](tokens)
    assert to_numpy(kept).all()
    np.testing.assert_allclose(to_numpy(outputs), np_oracle(bank, tokens, index, weight), rtol=1e-5, atol=1e-5)


def graph(fn):
    """A TensorFlow graph without XLA (`tf.cond` as graph control flow); `jax.jit` under JAX."""
    if keras.backend.backend() != "tensorflow":
        return compiled(fn)
    import tensorflow as tf

    return tf.function(fn, jit_compile=False, autograph=False)


@pytest.mark.parametrize("skip_unused", [False, True])
def test_blocked_padding_tokens_give_zeros(skip_unused):
    bank = make_bank(use_bias=True)
    tokens = random_tokens(T, HIDDEN, seed=2)
    index, weight = routings()["spread"]
    mask = np.array([1] * 5 + [0] * 7, "float32")  # most rows masked: fewer used blocks than the head
    outputs, kept = blocked_dispatch(tokens, index, weight, bank, mask=mask, block_size=4, skip_unused=skip_unused)
    expected = np_oracle(bank, tokens, index, weight) * mask[:, None]
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(to_numpy(kept), np.repeat(mask[:, None] > 0, 2, axis=1))


@pytest.mark.parametrize("skip_unused", [False, True])
def test_blocked_gradients_equal_oracle(skip_unused):
    """Skipping is meant for inference, but a gradient through it is still exact."""
    bank = make_bank(use_bias=True)
    tokens = random_tokens(T, HIDDEN, seed=1)
    index, weight = routings()["spread"]
    cotangent = random_tokens(T, HIDDEN, seed=3)
    out, grads = value_and_grads(
        lambda x, w: blocked_dispatch(x, index, w, bank, block_size=4, skip_unused=skip_unused)[0], bank, tokens, weight, cotangent
    )
    ref_out, ref_grads = value_and_grads(lambda x, w: keras_oracle(bank, x, index, w), bank, tokens, weight, cotangent)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    for grad, ref in zip(grads, ref_grads):
        assert np.abs(ref).max() > 0
        np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-5)


def test_blocked_gradients_with_padding_tokens_equal_oracle():
    """Masked tokens read no block and get no gradient; the others' gradients equal the oracle's."""
    bank = make_bank(use_bias=True)
    tokens = random_tokens(T, HIDDEN, seed=4)
    index, weight = routings()["spread"]
    mask = np.array([0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 1, 1], "float32")
    cotangent = random_tokens(T, HIDDEN, seed=5)
    out, grads = value_and_grads(
        lambda x, w: blocked_dispatch(x, index, w, bank, mask=mask, block_size=4)[0], bank, tokens, weight, cotangent
    )
    ref_out, ref_grads = value_and_grads(
        lambda x, w: keras_oracle(bank, x, index, w) * mask[:, None], bank, tokens, weight, cotangent
    )
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(grads[0][mask == 0], 0.0)
    for grad, ref in zip(grads, ref_grads):
        assert np.abs(ref).max() > 0
        np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-5)


def test_unused_blocks_are_skipped_not_computed():
    """Blocks past `used_blocks` come back as zeros: with biases, running them would not."""
    bank = make_bank(use_bias=True)
    blocks_in = ops.zeros((6, 4, HIDDEN))
    block_expert = ops.convert_to_tensor(np.array([0, 1, 2, 3, 3, 3], "int32"))
    every = to_numpy(bank.call_blocks(blocks_in, block_expert))
    assert np.abs(every[2:]).min() > 0  # a run block gives its biases' output
    skipped = to_numpy(run_used_blocks(bank, blocks_in, block_expert, ops.convert_to_tensor(3), head_blocks=2))
    np.testing.assert_allclose(skipped[:3], every[:3], rtol=1e-6, atol=1e-6)
    assert chunk_ends(2, 6)[0] == 3  # 4 tail blocks in single-block chunks: block 3 is the first skipped
    np.testing.assert_array_equal(skipped[3:], 0.0)


def chunk_ends(head, blocks):
    return [end for _, end in tail_chunks(head, blocks)]


def test_tail_chunks_cover_the_tail_in_at_most_max_chunks():
    assert tail_chunks(5, 5) == []
    for head, blocks in [(2, 6), (3, 40), (64, 128), (10, 18)]:
        chunks = tail_chunks(head, blocks)
        assert len(chunks) <= blocked.MAX_TAIL_CHUNKS
        assert chunks[0][0] == head and chunks[-1][1] == blocks
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))


def test_block_size_rule():
    assert block_size_for(1232, 8) == 64  # n / 2e = 77 -> 64
    assert block_size_for(8192, 64) == 64
    assert block_size_for(8192, 64, 128 * 256 * 1024) == 128  # wide experts: XLA:CPU threads 128-row blocks
    assert block_size_for(1232, 8, 128 * 128 * 256) == 64  # narrow ones: padding decides
    assert block_size_for(10, 8) == 8
    assert num_blocks(24, 4, 4) == 9  # ceil((24 + 4 * 3) / 4)


def test_blocked_skipping_under_mixed_bfloat16_with_biases():
    """The chunks' `cond` branches agree in dtype when float32 biases meet bfloat16 activations."""
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        bank = make_bank(use_bias=True)
        tokens = random_tokens(T, HIDDEN, seed=1)
        index, weight = routings()["spread"]
        rows = ops.cast(tokens, "bfloat16")  # as a mixed-precision layer passes them
        outputs = {
            skip: to_numpy(ops.cast(blocked_dispatch(rows, index, weight, bank, block_size=4, skip_unused=skip)[0], "float32"))
            for skip in (False, True)
        }
    finally:
        keras.config.set_dtype_policy("float32")
    np.testing.assert_allclose(outputs[True], outputs[False], rtol=1e-2, atol=1e-2)
    np.testing.assert_allclose(outputs[True], np_oracle(bank, tokens, index, weight), rtol=0.1, atol=0.1)
