"""Auxiliary losses against values worked out by hand (and small numpy references)."""

import math

import numpy as np
import pytest

from keras_moe.losses import auxiliary
from tests.conftest import to_numpy

# Four tokens, three experts; each row sums to 1.
PROBS = np.array(
    [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.2, 0.6], [0.5, 0.4, 0.1]],
    dtype="float32",
)
TOP1 = np.array([[0], [1], [2], [0]], dtype="int32")


# --- load_balancing_loss ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "index",
    [
        np.array([[0], [1], [2], [3], [0], [1], [2], [3]]),
        np.array([[0, 1], [2, 3], [1, 2], [3, 0], [0, 1], [2, 3], [1, 2], [3, 0]]),
    ],
    ids=["top1", "top2"],
)
def test_load_balancing_loss_is_one_for_uniform_routing(index):
    probs = np.full((8, 4), 0.25, "float32")
    loss = to_numpy(auxiliary.load_balancing_loss(probs, index.astype("int32")))
    assert loss == pytest.approx(1.0, abs=1e-6)


def test_load_balancing_loss_hand_example():
    # f = [2/4, 1/4, 1/4]; P = [1.5/4, 1.4/4, 1.1/4]; 3 * sum(f * P) = 3 * 0.34375.
    loss = to_numpy(auxiliary.load_balancing_loss(PROBS, TOP1))
    assert loss == pytest.approx(1.03125, rel=1e-6)


def test_load_balancing_loss_collapsed_router_is_num_experts():
    probs = np.tile(np.array([[1.0, 0.0, 0.0, 0.0]], "float32"), (5, 1))
    index = np.zeros((5, 1), "int32")
    assert to_numpy(auxiliary.load_balancing_loss(probs, index)) == pytest.approx(4.0, rel=1e-6)


def test_load_balancing_loss_top2_matches_numpy():
    index = np.array([[0, 1], [1, 2], [2, 1], [0, 2]], "int32")
    # counts [2, 3, 3] / 8; P = [0.375, 0.35, 0.275]
    expected = 3 * (2 / 8 * 0.375 + 3 / 8 * 0.35 + 3 / 8 * 0.275)
    loss = to_numpy(auxiliary.load_balancing_loss(PROBS, index))
    assert loss == pytest.approx(expected, rel=1e-6)


def test_load_balancing_loss_mask_excludes_padding():
    mask = np.array([1, 1, 0, 1], "float32")
    # Valid tokens 0, 1, 3: f = [2/3, 1/3, 0]; P = [1.3/3, 1.2/3, 0.5/3] -> 3 * 3.8 / 9.
    loss = to_numpy(auxiliary.load_balancing_loss(PROBS, TOP1, mask))
    assert loss == pytest.approx(3.8 / 3, rel=1e-6)
    # Garbage in the padding row changes nothing.
    probs = PROBS.copy()
    probs[2] = [0.0, 0.0, 1.0]
    index = TOP1.copy()
    index[2] = 1
    assert to_numpy(auxiliary.load_balancing_loss(probs, index, mask)) == pytest.approx(3.8 / 3, rel=1e-6)


# --- importance / load / coefficient of variation --------------------------------------------------


def test_coefficient_of_variation_squared_uses_population_variance():
    # mean 2.5, population variance 1.25 -> 0.2 (the sample variance would give 0.2667).
    value = to_numpy(auxiliary.coefficient_of_variation_squared(np.array([1.0, 2.0, 3.0, 4.0], "float32")))
    assert value == pytest.approx(0.2, rel=1e-6)


def test_coefficient_of_variation_squared_of_constant_is_zero():
    value = to_numpy(auxiliary.coefficient_of_variation_squared(np.full((5,), 3.0, "float32")))
    assert value == pytest.approx(0.0, abs=1e-9)


GATES = np.array([[0.6, 0.4, 0.0], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]], "float32")


def np_cv2(values):
    return np.var(values) / np.mean(values) ** 2


def test_importance_loss_hand_example():
    # importance = [1.6, 0.9, 0.5]: mean 1, variance (0.36 + 0.01 + 0.25) / 3.
    value = to_numpy(auxiliary.importance_loss(GATES))
    assert value == pytest.approx(0.62 / 3, rel=1e-5)


def test_importance_loss_with_mask():
    mask = np.array([1, 1, 0], "float32")
    expected = np_cv2(np.array([0.6, 0.9, 0.5]))  # the third token is padding
    assert to_numpy(auxiliary.importance_loss(GATES, mask)) == pytest.approx(expected, rel=1e-5)


def test_load_loss_is_cv_squared_of_summed_load():
    load_probability = np.array([[0.9, 0.1, 0.5], [0.3, 0.3, 0.3], [0.2, 0.8, 0.0]], "float32")
    expected = np_cv2(load_probability.sum(axis=0))
    assert to_numpy(auxiliary.load_loss(load_probability)) == pytest.approx(expected, rel=1e-5)
    mask = np.array([0, 1, 1], "float32")
    expected_masked = np_cv2(load_probability[1:].sum(axis=0))
    assert to_numpy(auxiliary.load_loss(load_probability, mask)) == pytest.approx(expected_masked, rel=1e-5)


def test_balanced_importance_is_zero():
    gates = np.array([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]], "float32")
    assert to_numpy(auxiliary.importance_loss(gates)) == pytest.approx(0.0, abs=1e-7)


# --- router z-loss ---------------------------------------------------------------------------------


def test_router_z_loss_hand_example():
    # logsumexp([0, 0]) = ln 2; logsumexp([ln 3, 0]) = ln 4 = 2 ln 2 -> mean of squares 2.5 (ln 2)^2.
    logits = np.array([[0.0, 0.0], [math.log(3.0), 0.0]], "float32")
    assert to_numpy(auxiliary.router_z_loss(logits)) == pytest.approx(2.5 * math.log(2) ** 2, rel=1e-5)
    mask = np.array([1, 0], "float32")
    assert to_numpy(auxiliary.router_z_loss(logits, mask)) == pytest.approx(math.log(2) ** 2, rel=1e-5)


def test_router_z_loss_matches_numpy_on_large_logits():
    logits = np.array([[30.0, 29.0, -5.0], [-2.0, 1.0, 0.5]], "float32")
    lse = np.log(np.sum(np.exp(logits.astype("float64")), axis=-1))
    assert to_numpy(auxiliary.router_z_loss(logits)) == pytest.approx(np.mean(lse**2), rel=1e-5)


# --- router entropy --------------------------------------------------------------------------------


def test_router_entropy_uniform_is_log_e():
    probs = np.full((3, 5), 0.2, "float32")
    assert to_numpy(auxiliary.router_entropy(probs)) == pytest.approx(math.log(5), rel=1e-5)


def test_router_entropy_one_hot_is_zero():
    probs = np.eye(4, dtype="float32")
    assert to_numpy(auxiliary.router_entropy(probs)) == pytest.approx(0.0, abs=1e-6)


def test_router_entropy_with_mask():
    probs = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], "float32")
    expected_all = (math.log(2) + 0.0 + math.log(3)) / 3
    assert to_numpy(auxiliary.router_entropy(probs)) == pytest.approx(expected_all, rel=1e-5)
    mask = np.array([1, 1, 0], "float32")
    assert to_numpy(auxiliary.router_entropy(probs, mask)) == pytest.approx(math.log(2) / 2, rel=1e-5)


# --- expert assignment fraction --------------------------------------------------------------------

INDEX = np.array([[0, 1], [0, 2], [3, 0]], "int32")


def test_expert_assignment_fraction():
    fraction = to_numpy(auxiliary.expert_assignment_fraction(INDEX, 4))
    np.testing.assert_allclose(fraction, [3 / 6, 1 / 6, 1 / 6, 1 / 6], rtol=1e-6)


def test_expert_assignment_fraction_with_mask():
    fraction = to_numpy(auxiliary.expert_assignment_fraction(INDEX, 4, np.array([1, 1, 0], "float32")))
    np.testing.assert_allclose(fraction, [2 / 4, 1 / 4, 1 / 4, 0.0], rtol=1e-6)


def test_expert_assignment_fraction_all_padding_is_zero():
    fraction = to_numpy(auxiliary.expert_assignment_fraction(INDEX, 4, np.zeros((3,), "float32")))
    np.testing.assert_array_equal(fraction, np.zeros(4))
