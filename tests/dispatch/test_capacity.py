"""Capacity dispatch: the capacity formula, slot assignment, and agreement with the dense oracle."""


import numpy as np
import pytest
from keras import ops

from keras_moe.dispatch import capacity_dispatch, capacity_slots, expert_capacity
from tests.conftest import random_tokens, to_numpy
from tests.dispatch.oracle import (
    HIDDEN,
    NUM_EXPERTS,
    assert_per_token_and_permutation_equivariant,
    compiled,
    distinct_choices,
    keras_oracle,
    make_bank,
    mask_dtype_params,
    np_capacity_kept,
    np_oracle,
    value_and_grads,
)

# --- expert_capacity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "t, e, k, factor, minimum, expected",
    [
        (16, 4, 2, 1.0, 1, 8),  # ceil(1.0 * 16 * 2 / 4)
        (10, 4, 1, 1.25, 1, 4),  # ceil(3.125)
        (10, 3, 2, 1.0, 1, 7),  # ceil(6.67)
        (16, 4, 1, 0.1, 3, 3),  # min_expert_capacity wins
        (5, 2, 2, 4.0, 1, 5),  # clipped to t
        (5, 2, 1, 0.5, 9, 5),  # min_expert_capacity is clipped to t too
        (1, 8, 1, 0.01, 0, 1),  # never below one
    ],
)
def test_expert_capacity(t, e, k, factor, minimum, expected):
    assert expert_capacity(t, e, k, factor, minimum) == expected
    assert isinstance(expert_capacity(t, e, k, factor, minimum), int)
    tensor = expert_capacity(ops.convert_to_tensor(t, "int32"), e, k, factor, minimum)
    assert int(to_numpy(tensor)) == expected


# --- capacity_slots --------------------------------------------------------------------------------

INDEX = np.array([[0, 1], [0, 2], [0, 1], [1, 0]], "int32")  # e = 3, c = 2, overflow slot 6


def test_capacity_slots_choice_major_priority():
    # First choices: t0->e0 #0, t1->e0 #1, t2->e0 dropped, t3->e1 #0.
    # Second choices: t0->e1 #1, t1->e2 #0, t2->e1 dropped, t3->e0 dropped.
    slot, kept = capacity_slots(INDEX, 3, 2)
    np.testing.assert_array_equal(to_numpy(slot), [[0, 3], [1, 4], [6, 6], [2, 6]])
    np.testing.assert_array_equal(to_numpy(kept), [[True, True], [True, True], [False, False], [True, False]])
    assert to_numpy(slot).dtype == np.int32


def test_capacity_slots_padding_takes_no_slot():
    mask = np.array([1, 0, 1, 1], "float32")
    # First: t0->e0 #0, t2->e0 #1, t3->e1 #0. Second: t0->e1 #1, t2->e1 dropped, t3->e0 dropped.
    slot, kept = capacity_slots(INDEX, 3, 2, mask)
    np.testing.assert_array_equal(to_numpy(slot), [[0, 3], [6, 6], [1, 6], [2, 6]])
    np.testing.assert_array_equal(to_numpy(kept), [[True, True], [False, False], [True, False], [True, False]])


@pytest.mark.parametrize("capacity", [1, 2, 3, 5])
def test_capacity_slots_match_reference(capacity):
    index, _ = distinct_choices(10, NUM_EXPERTS, 2, seed=capacity)
    mask = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1, 1], "float32")
    slot, kept = capacity_slots(index, NUM_EXPERTS, capacity, mask)
    ref_slot, ref_kept = np_capacity_kept(index, NUM_EXPERTS, capacity, mask)
    np.testing.assert_array_equal(to_numpy(slot), ref_slot)
    np.testing.assert_array_equal(to_numpy(kept), ref_kept)
    kept_slots = to_numpy(slot)[to_numpy(kept)]
    assert len(set(kept_slots.tolist())) == len(kept_slots)  # no two choices share a slot


# --- capacity_dispatch against the oracle ----------------------------------------------------------

T, K = 6, 2


@pytest.mark.parametrize("use_bias", [False, True])
def test_capacity_dispatch_without_drops_equals_oracle(use_bias):
    bank = make_bank(use_bias=use_bias)
    tokens = random_tokens(T, HIDDEN, seed=1)
    index, weight = distinct_choices(T, NUM_EXPERTS, K, seed=2)
    outputs, kept = capacity_dispatch(tokens, index, weight, bank, capacity=T)
    assert to_numpy(kept).all()
    np.testing.assert_allclose(to_numpy(outputs), np_oracle(bank, tokens, index, weight), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        to_numpy(outputs), to_numpy(keras_oracle(bank, tokens, index, weight)), rtol=1e-5, atol=1e-6
    )


def test_capacity_dispatch_gradients_equal_oracle():
    bank = make_bank(use_bias=True)
    tokens = random_tokens(T, HIDDEN, seed=1)
    index, weight = distinct_choices(T, NUM_EXPERTS, K, seed=2)
    cotangent = random_tokens(T, HIDDEN, seed=3)
    out, grads = value_and_grads(
        lambda x, w: capacity_dispatch(x, index, w, bank, capacity=T)[0], bank, tokens, weight, cotangent
    )
    ref_out, ref_grads = value_and_grads(lambda x, w: keras_oracle(bank, x, index, w), bank, tokens, weight, cotangent)
    np.testing.assert_allclose(out, ref_out, rtol=1e-5, atol=1e-6)
    assert len(grads) == 2 + len(bank.trainable_variables)
    for grad, ref in zip(grads, ref_grads):
        assert np.abs(ref).max() > 0
        np.testing.assert_allclose(grad, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("capacity", [1, 2, 3])
@pytest.mark.parametrize("masked", [False, True])
def test_capacity_dispatch_drops_exactly_the_overflow(capacity, masked):
    t = 8
    bank = make_bank()
    tokens = random_tokens(t, HIDDEN, seed=4)
    index, weight = distinct_choices(t, NUM_EXPERTS, K, seed=5)
    index[:5, 0] = 0  # overload expert 0 with first choices
    index[:5, 1] = np.where(index[:5, 1] == 0, 1, index[:5, 1])
    mask = np.array([1, 1, 0, 1, 1, 1, 1, 0], "float32") if masked else None
    outputs, kept = capacity_dispatch(tokens, index, weight, bank, capacity=capacity, mask=mask)
    kept = to_numpy(kept)
    _, ref_kept = np_capacity_kept(index, NUM_EXPERTS, capacity, mask)
    np.testing.assert_array_equal(kept, ref_kept)
    # Dropped (token, choice) pairs are exactly missing from the sum.
    np.testing.assert_allclose(
        to_numpy(outputs), np_oracle(bank, tokens, index, weight * ref_kept), rtol=1e-5, atol=1e-5
    )
    # No expert gets more than its capacity; demand below capacity is fully served.
    valid = np.ones(t, bool) if mask is None else mask > 0
    demand = np.bincount(index[valid].ravel(), minlength=NUM_EXPERTS)
    served = np.bincount(index[kept], minlength=NUM_EXPERTS)
    np.testing.assert_array_equal(served, np.minimum(demand, capacity))
    # Dropped fraction over valid pairs.
    dropped = 1.0 - kept[valid].mean()
    assert dropped == pytest.approx(1.0 - np.minimum(demand, capacity).sum() / (valid.sum() * K))
    if masked:
        assert not kept[~valid].any()
        np.testing.assert_array_equal(to_numpy(outputs)[~valid], 0.0)
    if capacity == 1:
        assert dropped > 0


def test_capacity_dispatch_is_per_token_and_permutation_equivariant():
    # Capacity = batch size: nothing drops, so each token's output stands alone.
    assert_per_token_and_permutation_equivariant(lambda x, i, w, bank: capacity_dispatch(x, i, w, bank, capacity=len(x)))


def test_capacity_dispatch_compiles_with_static_shapes():
    """The module promises static shapes: it runs under jax.jit and XLA-compiled tf.function."""
    bank = make_bank(use_bias=True)
    tokens = random_tokens(T, HIDDEN, seed=1)
    index, weight = distinct_choices(T, NUM_EXPERTS, K, seed=2)
    mask = np.array([1, 1, 1, 0, 1, 1], "float32")

    def run(x, i, w, m):
        return capacity_dispatch(x, i, w, bank, capacity=2, mask=m)

    outputs, kept = compiled(run)(tokens, index, weight, mask)
    eager_outputs, eager_kept = run(tokens, index, weight, mask)
    np.testing.assert_array_equal(to_numpy(kept), to_numpy(eager_kept))
    np.testing.assert_allclose(to_numpy(outputs), to_numpy(eager_outputs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", mask_dtype_params())
def test_capacity_slots_accept_any_mask_dtype(dtype):
    mask = np.array([1, 0, 1, 1]).astype(dtype)
    slot, kept = capacity_slots(INDEX, 3, 2, mask)
    np.testing.assert_array_equal(to_numpy(slot), [[0, 3], [6, 6], [1, 6], [2, 6]])
    np.testing.assert_array_equal(to_numpy(kept), [[True, True], [False, False], [True, False], [True, False]])
