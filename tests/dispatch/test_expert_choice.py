"""expert_choice_dispatch against a numpy reference."""

import numpy as np

from keras_moe.dispatch import expert_choice_dispatch
from tests.conftest import random_tokens, to_numpy
from tests.dispatch.oracle import HIDDEN, make_bank, np_expert

T = 5
# [e, c]: token 0 picked by three experts, token 4 by none, and one slot holds a zero weight.
TOKEN_INDEX = np.array([[0, 1], [0, 2], [3, 0], [2, 1]], "int32")
TOKEN_WEIGHT = np.array([[0.5, 0.25], [0.75, 0.1], [0.6, 0.3], [0.4, 0.0]], "float32")


def np_expert_choice(bank, tokens, token_index, token_weight):
    out = np.zeros(tokens.shape, "float64")
    for expert in range(token_index.shape[0]):
        for slot in range(token_index.shape[1]):
            t = token_index[expert, slot]
            out[t] += token_weight[expert, slot] * np_expert(bank, expert, tokens[t : t + 1])[0]
    return out


def test_expert_choice_dispatch_matches_numpy():
    bank = make_bank(use_bias=True)
    tokens = random_tokens(T, HIDDEN, seed=1)
    outputs, chosen = expert_choice_dispatch(tokens, TOKEN_INDEX, TOKEN_WEIGHT, bank)
    expected = np_expert_choice(bank, tokens, TOKEN_INDEX, TOKEN_WEIGHT)
    np.testing.assert_allclose(to_numpy(outputs), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(to_numpy(outputs)[4], 0.0)  # nobody picked token 4
    # Times chosen counts slots with a positive weight only.
    np.testing.assert_array_equal(to_numpy(chosen), [3, 1, 2, 1, 0])


def test_expert_choice_dispatch_is_linear_in_weights():
    bank = make_bank()
    tokens = random_tokens(T, HIDDEN, seed=2)
    once = to_numpy(expert_choice_dispatch(tokens, TOKEN_INDEX, TOKEN_WEIGHT, bank)[0])
    twice = to_numpy(expert_choice_dispatch(tokens, TOKEN_INDEX, 2.0 * TOKEN_WEIGHT, bank)[0])
    np.testing.assert_allclose(twice, 2.0 * once, rtol=1e-5, atol=1e-6)
    assert np.abs(once).max() > 1e-3  # a zero output would pass the linearity check trivially
