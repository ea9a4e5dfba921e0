"""soft_dispatch against a numpy reference."""

import numpy as np
import pytest

from keras_moe.dispatch import soft_dispatch
from tests.conftest import random_tokens, to_numpy
from tests.dispatch.oracle import HIDDEN, NUM_EXPERTS, make_bank, np_expert


def softmax(x, axis):
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def np_soft(bank, tokens, dispatch, combine, num_slots):
    batch, seq, n = dispatch.shape
    slots = np.einsum("bsn,bsh->bnh", dispatch.astype("float64"), tokens)  # [b, n, h]
    slot_out = np.zeros_like(slots)
    for b in range(batch):
        for slot in range(n):
            slot_out[b, slot] = np_expert(bank, slot // num_slots, slots[b, slot][None])[0]  # slot n -> expert n // p
    return np.einsum("bsn,bnh->bsh", combine, slot_out)


@pytest.mark.parametrize("num_slots", [1, 2])
def test_soft_dispatch_matches_numpy(num_slots):
    bank = make_bank(use_bias=True)
    batch, seq, n = 2, 3, NUM_EXPERTS * num_slots
    tokens = random_tokens(batch, seq, HIDDEN, seed=1)
    logits = random_tokens(batch, seq, n, seed=2)
    dispatch, combine = softmax(logits, axis=1), softmax(logits, axis=2)
    outputs = soft_dispatch(tokens, dispatch.astype("float32"), combine.astype("float32"), bank, num_slots)
    expected = np_soft(bank, tokens, dispatch, combine, num_slots)
    assert to_numpy(outputs).shape == (batch, seq, HIDDEN)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-5, atol=1e-5)


def test_soft_dispatch_one_hot_weights_route_one_token_to_one_expert():
    """Slot (expert 2) holds token 1 alone and sends it back to token 1 only."""
    bank = make_bank()
    tokens = random_tokens(1, 3, HIDDEN, seed=3)
    dispatch = np.zeros((1, 3, NUM_EXPERTS), "float32")
    dispatch[0, 1, 2] = 1.0
    combine = np.zeros((1, 3, NUM_EXPERTS), "float32")
    combine[0, 1, 2] = 1.0
    outputs = to_numpy(soft_dispatch(tokens, dispatch, combine, bank, 1))
    np.testing.assert_allclose(outputs[0, 1], np_expert(bank, 2, tokens[0, 1][None])[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(outputs[0, [0, 2]], 0.0)
