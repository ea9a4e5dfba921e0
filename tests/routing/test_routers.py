"""Routing on hand-built inputs with known answers.

Every router is built on `hidden_dim == num_experts` (`num_experts * num_slots` for Soft MoE) and its
kernel set to the identity, so the router logits equal the tokens chosen here.
"""

import math

import keras
import numpy as np
import pytest

from keras_moe.losses import auxiliary
from keras_moe.routing import (
    DenseGate,
    ExpertChoiceRouter,
    ExpertChoiceRouting,
    NoisyTopKRouter,
    SigmoidRouter,
    SoftMoERouter,
    SoftRouting,
    SwitchRouter,
    TokenChoiceRouting,
    TopKRouter,
)
from keras_moe.routing.expert_choice_router import expert_choice_capacity
from tests.conftest import random_tokens, to_numpy

# Five tokens, four experts, no ties within a row.
LOGITS = np.array(
    [
        [2.0, 1.0, 0.0, -1.0],
        [0.0, 3.0, 1.0, 0.5],
        [1.0, 1.5, -2.0, 4.0],
        [-1.0, 0.2, 2.5, 0.1],
        [0.3, -0.4, 0.0, 0.7],
    ],
    dtype="float32",
)
MASK = np.array([1, 1, 0, 1, 1], "float32")


def softmax(x, axis=-1):
    x = np.asarray(x, "float64")
    z = np.exp(x - x.max(axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, "float64")))


def top_k(values, k):
    """Indices of the k largest values per row, largest first."""
    return np.argsort(-values, axis=-1, kind="stable")[:, :k]


def identity_router(router, width):
    router.build((None, width))
    router.kernel.assign(np.eye(width, dtype="float32"))
    return router


# --- TopKRouter ------------------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", [True, False, "always"])
def test_top_k_router(normalize):
    router = identity_router(TopKRouter(num_experts=4, top_k=2, normalize_top_k=normalize), 4)
    result = router(LOGITS)
    probs = softmax(LOGITS)
    index = top_k(LOGITS, 2)
    weight = np.take_along_axis(probs, index, axis=-1)
    if normalize:
        weight = weight / weight.sum(axis=-1, keepdims=True)
    assert isinstance(result, TokenChoiceRouting)
    np.testing.assert_allclose(to_numpy(result.router_probs), probs, rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(result.expert_index), index)
    assert to_numpy(result.expert_index).dtype == np.int32
    np.testing.assert_allclose(to_numpy(result.expert_weight), weight, rtol=1e-5)


@pytest.mark.parametrize("normalize", [True, False, "always"])
def test_top_k_weight_gradient_is_the_renormalised_probability_gradient(normalize):
    """The renormalised weights come from a softmax over the top-k logits: same values and gradients."""
    from keras_moe.routing import softmax_top_k_routing

    cotangent = np.array([[1.0, -2.0]] * 5, "float32") * np.arange(1, 6, dtype="float32")[:, None]
    index = top_k(LOGITS, 2)

    def reference(logits):  # probabilities of the chosen experts, renormalised (or not)
        weight = keras.ops.take_along_axis(keras.ops.softmax(logits, axis=-1), index, axis=-1)
        return weight / keras.ops.sum(weight, axis=-1, keepdims=True) if normalize else weight

    def ours(logits):
        return softmax_top_k_routing(logits, 2, normalize).expert_weight

    np.testing.assert_allclose(to_numpy(ours(LOGITS)), to_numpy(reference(LOGITS)), rtol=1e-6)
    np.testing.assert_allclose(logit_gradient(ours, cotangent), logit_gradient(reference, cotangent), rtol=1e-5, atol=1e-6)


def logit_gradient(fn, cotangent):
    """d(sum(fn(LOGITS) * cotangent)) / d(LOGITS) on the current backend."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        logits = tf.constant(LOGITS)
        with tf.GradientTape() as tape:
            tape.watch(logits)
            loss = tf.reduce_sum(fn(logits) * cotangent)
        return tape.gradient(loss, logits).numpy()
    if keras.backend.backend() == "jax":
        import jax

        return np.asarray(jax.grad(lambda x: (fn(x) * cotangent).sum())(LOGITS))
    pytest.skip("gradients checked on TensorFlow and JAX")


@pytest.mark.parametrize("normalize, expected", [(True, "probability"), (False, "probability"), ("always", "one")])
def test_top_1_weight_is_one_only_when_always_normalised(normalize, expected):
    router = identity_router(TopKRouter(num_experts=4, top_k=1, normalize_top_k=normalize), 4)
    weight = to_numpy(router(LOGITS).expert_weight)[:, 0]
    np.testing.assert_allclose(weight, 1.0 if expected == "one" else softmax(LOGITS).max(axis=-1), rtol=1e-6)


def test_router_bias_shifts_the_logits():
    router = identity_router(TopKRouter(num_experts=4, top_k=2, use_bias=True), 4)
    router.bias.assign(np.array([0.0, 0.0, 10.0, 0.0], "float32"))
    result = router(LOGITS)
    np.testing.assert_allclose(to_numpy(result.router_logits), LOGITS + [0, 0, 10, 0], rtol=1e-6)
    assert (to_numpy(result.expert_index)[:, 0] == 2).all()


def test_top_k_router_mask_zeroes_padding_weight():
    router = identity_router(TopKRouter(num_experts=4, top_k=2), 4)
    result = router(LOGITS, mask=MASK)
    probs = softmax(LOGITS)
    weight = np.take_along_axis(probs, top_k(LOGITS, 2), axis=-1)
    weight = weight / weight.sum(axis=-1, keepdims=True) * MASK[:, None]
    np.testing.assert_allclose(to_numpy(result.expert_weight), weight, rtol=1e-5, atol=1e-7)
    assert np.all(to_numpy(result.expert_weight)[2] == 0.0)


def test_top_k_router_aux_losses_are_weighted_and_masked():
    router = identity_router(
        TopKRouter(num_experts=4, top_k=2, load_balancing_loss_weight=0.5, router_z_loss_weight=0.25), 4
    )
    result = router(LOGITS, mask=MASK)
    valid = MASK > 0
    probs = softmax(LOGITS)
    index = top_k(LOGITS, 2)
    fraction = np.bincount(index[valid].ravel(), minlength=4) / (2 * valid.sum())
    lb = 4 * np.sum(fraction * probs[valid].mean(axis=0))
    lse = np.log(np.exp(LOGITS.astype("float64")).sum(axis=-1))
    z = np.mean(lse[valid] ** 2)
    assert to_numpy(result.aux_losses["load_balancing_loss"]) == pytest.approx(0.5 * lb, rel=1e-5)
    assert to_numpy(result.aux_losses["router_z_loss"]) == pytest.approx(0.25 * z, rel=1e-5)


def test_zero_loss_weights_give_no_aux_losses():
    router = identity_router(TopKRouter(num_experts=4, top_k=2, load_balancing_loss_weight=0.0, router_z_loss_weight=0.0), 4)
    assert router(LOGITS, training=True).aux_losses == {}


# --- SwitchRouter ----------------------------------------------------------------------------------


def test_switch_router_top1_weight_is_winner_probability():
    router = identity_router(SwitchRouter(num_experts=4), 4)
    result = router(LOGITS)
    probs = softmax(LOGITS)
    index = np.argmax(LOGITS, axis=-1)[:, None]
    np.testing.assert_array_equal(to_numpy(result.expert_index), index)
    np.testing.assert_allclose(to_numpy(result.expert_weight), np.take_along_axis(probs, index, -1), rtol=1e-5)
    assert router.top_k == 1


def test_switch_router_rejects_top_k_2():
    with pytest.raises(ValueError, match="top_k=2"):
        SwitchRouter(num_experts=4, top_k=2)


# --- NoisyTopKRouter -------------------------------------------------------------------------------


def test_noisy_top_k_router_without_noise_at_inference():
    router = identity_router(NoisyTopKRouter(num_experts=4, top_k=2, importance_loss_weight=0.5), 4)
    result = router(LOGITS, training=False)
    index = top_k(LOGITS, 2)
    weight = softmax(np.take_along_axis(LOGITS, index, axis=-1))
    np.testing.assert_array_equal(to_numpy(result.expert_index), index)
    np.testing.assert_allclose(to_numpy(result.expert_weight), weight, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(result.router_probs), softmax(LOGITS), rtol=1e-5)
    # Importance loss on the gates (chosen weights scattered to [t, e]); no load loss at inference.
    gates = np.zeros((5, 4))
    np.put_along_axis(gates, index, weight, axis=-1)
    importance = gates.sum(axis=0)
    expected = np.var(importance) / np.mean(importance) ** 2
    assert to_numpy(result.aux_losses["importance_loss"]) == pytest.approx(0.5 * expected, rel=1e-4)
    assert "load_loss" not in result.aux_losses


def test_noisy_top_k_router_training_losses_are_finite():
    router = NoisyTopKRouter(num_experts=4, top_k=2, seed=3)
    result = router(random_tokens(6, 8), mask=np.array([1, 1, 1, 1, 0, 0], "float32"), training=True)
    assert set(result.aux_losses) >= {"importance_loss", "load_loss"}
    for name in ("importance_loss", "load_loss"):
        value = to_numpy(result.aux_losses[name])
        assert value.shape == () and np.isfinite(value) and value >= 0
    np.testing.assert_array_equal(to_numpy(result.expert_weight)[4:], 0.0)
    np.testing.assert_allclose(to_numpy(result.expert_weight)[:4].sum(axis=-1), 1.0, rtol=1e-5)


def test_noisy_top_k_router_training_matches_numpy_with_known_noise():
    """Re-draw the router's noise from a fresh generator with the same seed, then check the maths."""
    router = identity_router(NoisyTopKRouter(num_experts=4, top_k=2, noise_epsilon=0.05, seed=3), 4)
    noise_kernel = random_tokens(4, 4, seed=9) * 0.5
    router.noise_kernel.assign(noise_kernel)
    mask = np.array([1, 1, 1, 0, 1], "float32")
    result = router(LOGITS, mask=mask, training=True)

    noise = to_numpy(keras.random.normal(LOGITS.shape, seed=keras.random.SeedGenerator(3))).astype("float64")
    std = np.log1p(np.exp(LOGITS.astype("float64") @ noise_kernel)) + 0.05
    noisy = LOGITS + noise * std
    index = top_k(noisy, 2)
    weight = softmax(np.take_along_axis(noisy, index, -1)) * mask[:, None]
    np.testing.assert_array_equal(to_numpy(result.expert_index), index)
    np.testing.assert_allclose(to_numpy(result.expert_weight), weight, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(to_numpy(result.router_probs), softmax(noisy), rtol=1e-4)

    top = np.sort(noisy, axis=-1)[:, ::-1]
    threshold = np.where(noisy > top[:, 2:3], top[:, 2:3], top[:, 1:2])  # (k+1)-th if in the top k, else k-th
    phi = np.vectorize(lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0))))
    load = (phi((LOGITS - threshold) / std) * mask[:, None]).sum(axis=0)
    gates = np.zeros((5, 4))
    np.put_along_axis(gates, index, weight, axis=-1)
    importance = gates.sum(axis=0)
    cv2 = lambda v: np.var(v) / np.mean(v) ** 2  # noqa: E731
    assert to_numpy(result.aux_losses["load_loss"]) == pytest.approx(0.1 * cv2(load), rel=1e-4)
    assert to_numpy(result.aux_losses["importance_loss"]) == pytest.approx(0.1 * cv2(importance), rel=1e-4)


def test_noisy_top_k_router_needs_top_k_below_num_experts():
    with pytest.raises(ValueError, match="top_k"):
        NoisyTopKRouter(num_experts=4, top_k=4)


# --- ExpertChoiceRouter ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "num_tokens, capacity_factor, min_capacity, expected",
    [(6, 1.0, 1, 2), (6, 2.0, 1, 4), (7, 1.0, 1, 3), (6, 0.1, 2, 2), (6, 10.0, 1, 6), (6, 0.1, 9, 6)],
)
def test_expert_choice_capacity(num_tokens, capacity_factor, min_capacity, expected):
    assert expert_choice_capacity(num_tokens, 3, capacity_factor, min_capacity) == expected


EC_LOGITS = np.array(
    [[2.0, 0.1, -1.0], [0.5, 1.5, 0.0], [-1.0, 0.3, 2.2], [1.1, 1.0, 0.9], [0.0, -0.5, 1.7], [3.0, 0.2, 0.4]],
    dtype="float32",
)


@pytest.mark.parametrize("capacity_factor, min_capacity, capacity", [(1.0, 1, 2), (0.1, 3, 3), (10.0, 1, 6)])
def test_expert_choice_router(capacity_factor, min_capacity, capacity):
    router = identity_router(
        ExpertChoiceRouter(num_experts=3, capacity_factor=capacity_factor, min_expert_capacity=min_capacity), 3
    )
    result = router(EC_LOGITS)
    scores = softmax(EC_LOGITS)
    index = top_k(scores.T, capacity)  # [e, c]: each expert's best tokens
    assert isinstance(result, ExpertChoiceRouting)
    np.testing.assert_array_equal(to_numpy(result.token_index), index)
    np.testing.assert_allclose(to_numpy(result.token_weight), np.take_along_axis(scores.T, index, -1), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(result.router_probs), scores, rtol=1e-5)


def test_expert_choice_router_never_weights_padding():
    mask = np.array([1, 0, 1, 1, 0, 0], "float32")  # three valid tokens, capacity 4 > 3
    router = identity_router(ExpertChoiceRouter(num_experts=3, capacity_factor=2.0), 3)
    result = router(EC_LOGITS, mask=mask)
    index, weight = to_numpy(result.token_index), to_numpy(result.token_weight)
    assert index.shape == (3, 4)
    scores = softmax(EC_LOGITS)
    for expert in range(3):
        valid = [t for t in top_k(scores[:, expert][None], 6)[0] if mask[t] > 0]
        np.testing.assert_array_equal(index[expert, :3], valid)  # valid tokens first, by score
        np.testing.assert_allclose(weight[expert, :3], scores[valid, expert], rtol=1e-5)
        assert mask[index[expert, 3]] == 0 and weight[expert, 3] == 0.0
    assert np.all(weight[mask[index] == 0] == 0.0)


# --- SoftMoERouter ---------------------------------------------------------------------------------

SOFT_TOKENS = random_tokens(2, 3, 4, seed=5) * 2.0  # [b, s, n] with n = e * p = 2 * 2
SOFT_MASK = np.array([[1, 1, 0], [1, 1, 1]], "float32")


def test_soft_moe_router_unnormalized():
    router = identity_router(SoftMoERouter(num_experts=2, num_slots=2, normalize=False), 4)
    result = router(SOFT_TOKENS)
    combine = softmax(SOFT_TOKENS, axis=-1)
    assert isinstance(result, SoftRouting)
    np.testing.assert_allclose(to_numpy(result.dispatch_weights), softmax(SOFT_TOKENS, axis=1), rtol=1e-5)
    np.testing.assert_allclose(to_numpy(result.combine_weights), combine, rtol=1e-5)
    per_expert = combine.reshape(2, 3, 2, 2).sum(axis=-1).reshape(6, 2)
    np.testing.assert_allclose(to_numpy(result.router_probs), per_expert, rtol=1e-5)


def test_soft_moe_router_mask_gives_padding_no_dispatch_weight():
    router = identity_router(SoftMoERouter(num_experts=2, num_slots=2, normalize=False), 4)
    result = router(SOFT_TOKENS, mask=SOFT_MASK)
    dispatch = to_numpy(result.dispatch_weights)
    np.testing.assert_array_equal(dispatch[0, 2], 0.0)
    np.testing.assert_allclose(dispatch[0, :2], softmax(SOFT_TOKENS[0, :2], axis=0), rtol=1e-5)
    np.testing.assert_allclose(dispatch[1], softmax(SOFT_TOKENS[1], axis=0), rtol=1e-5)
    np.testing.assert_allclose(dispatch.sum(axis=1), 1.0, rtol=1e-5)


def test_soft_moe_router_fully_padded_sequence_dispatches_nothing():
    router = identity_router(SoftMoERouter(num_experts=2, num_slots=2, normalize=False), 4)
    mask = np.array([[0, 0, 0], [1, 0, 1]], "float32")
    dispatch = to_numpy(router(SOFT_TOKENS, mask=mask).dispatch_weights)
    np.testing.assert_array_equal(dispatch[0], 0.0)
    np.testing.assert_allclose(dispatch[1, [0, 2]], softmax(SOFT_TOKENS[1, [0, 2]], axis=0), rtol=1e-5)


def test_soft_moe_router_normalized():
    router = identity_router(SoftMoERouter(num_experts=2, num_slots=2, normalize=True), 4)
    result = router(SOFT_TOKENS)
    dispatch = to_numpy(result.dispatch_weights)
    assert dispatch.shape == (2, 3, 4) and to_numpy(result.combine_weights).shape == (2, 3, 4)
    assert to_numpy(result.router_probs).shape == (6, 2)
    np.testing.assert_allclose(dispatch.sum(axis=1), 1.0, rtol=1e-5)
    # Identity kernel and scale 1: logits are the L2-normalised tokens.
    unit = SOFT_TOKENS / np.linalg.norm(SOFT_TOKENS, axis=-1, keepdims=True)
    np.testing.assert_allclose(dispatch, softmax(unit, axis=1), rtol=1e-4)


# --- SigmoidRouter ---------------------------------------------------------------------------------


def test_sigmoid_router_selection_uses_bias_and_weights_use_scores():
    router = identity_router(SigmoidRouter(num_experts=4, top_k=2, routed_scaling_factor=2.5), 4)
    bias = np.array([0.0, 0.0, 0.0, 5.0], "float32")  # expert 3 always wins selection
    router.expert_bias.assign(bias)
    result = router(LOGITS, training=False)
    scores = sigmoid(LOGITS)
    index = top_k(scores + bias, 2)
    assert np.all(index[:, 0] == 3)
    weight = np.take_along_axis(scores, index, -1)
    weight = 2.5 * weight / weight.sum(axis=-1, keepdims=True)
    np.testing.assert_array_equal(to_numpy(result.expert_index), index)
    np.testing.assert_allclose(to_numpy(result.expert_weight), weight, rtol=1e-5)
    np.testing.assert_allclose(to_numpy(result.router_probs), scores / scores.sum(-1, keepdims=True), rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(router.expert_bias), bias)  # inference leaves the bias alone


# Top-2 choices: experts 0,1 / 0,2 / 0,1 / 0,2 -> load [4, 2, 2, 0] / 8, mean 1/4.
SIGMOID_LOGITS = np.array(
    [[3.0, 2.0, -1.0, -2.0], [3.0, -1.0, 2.0, -2.0], [2.0, 1.0, 0.0, -1.0], [2.5, 0.0, 1.0, -1.0]],
    dtype="float32",
)


def test_sigmoid_router_bias_update_in_training():
    router = identity_router(SigmoidRouter(num_experts=4, top_k=2, bias_update_rate=0.1), 4)
    result = router(SIGMOID_LOGITS, training=True)
    np.testing.assert_array_equal(to_numpy(result.expert_index), [[0, 1], [0, 2], [0, 1], [0, 2]])
    load = np.array([4, 2, 2, 0]) / 8
    expected = 0.1 * np.sign(0.25 - load)  # [-0.1, 0, 0, +0.1]
    np.testing.assert_allclose(to_numpy(router.expert_bias), expected, atol=1e-7)
    # A second training call starts from the updated bias; inference changes nothing.
    router(SIGMOID_LOGITS, training=False)
    np.testing.assert_allclose(to_numpy(router.expert_bias), expected, atol=1e-7)


def test_sigmoid_router_bias_update_ignores_padding():
    router = identity_router(SigmoidRouter(num_experts=4, top_k=2, bias_update_rate=0.1), 4)
    mask = np.array([1, 1, 0, 0], "float32")  # load [2, 1, 1, 0] / 4
    result = router(SIGMOID_LOGITS, mask=mask, training=True)
    np.testing.assert_allclose(to_numpy(router.expert_bias), [-0.1, 0.0, 0.0, 0.1], atol=1e-7)
    np.testing.assert_array_equal(to_numpy(result.expert_weight)[2:], 0.0)


# --- DenseGate -------------------------------------------------------------------------------------


def test_dense_gate_weights_are_softmax_over_all_experts():
    router = identity_router(DenseGate(num_experts=4), 4)
    result = router(LOGITS, mask=MASK)
    probs = softmax(LOGITS)
    np.testing.assert_allclose(to_numpy(result.router_probs), probs, rtol=1e-5)
    np.testing.assert_array_equal(to_numpy(result.expert_index), np.tile(np.arange(4), (5, 1)))
    np.testing.assert_allclose(to_numpy(result.expert_weight), probs * MASK[:, None], rtol=1e-5, atol=1e-7)


def test_dense_gate_entropy_loss():
    router = identity_router(DenseGate(num_experts=4, entropy_loss_weight=0.3), 4)
    result = router(LOGITS)
    probs = softmax(LOGITS)
    entropy = np.mean(-np.sum(probs * np.log(probs), axis=-1))
    assert to_numpy(result.aux_losses["entropy_loss"]) == pytest.approx(-0.3 * entropy, rel=1e-5)
    np.testing.assert_allclose(entropy, to_numpy(auxiliary.router_entropy(probs.astype("float32"))), rtol=1e-5)


# --- Jitter and precision, every router ------------------------------------------------------------

ROUTER_FACTORIES = {
    "top_k": lambda **kw: TopKRouter(num_experts=4, top_k=2, **kw),
    "switch": lambda **kw: SwitchRouter(num_experts=4, **kw),
    "noisy_top_k": lambda **kw: NoisyTopKRouter(num_experts=4, top_k=2, **kw),
    "expert_choice": lambda **kw: ExpertChoiceRouter(num_experts=4, **kw),
    "soft": lambda **kw: SoftMoERouter(num_experts=4, normalize=False, **kw),
    "soft_normalized": lambda **kw: SoftMoERouter(num_experts=4, normalize=True, **kw),
    "sigmoid": lambda **kw: SigmoidRouter(num_experts=4, top_k=2, **kw),
    "dense": lambda **kw: DenseGate(num_experts=4, **kw),
}


def router_inputs(name):
    return random_tokens(2, 3, 8, seed=1) if name.startswith("soft") else random_tokens(6, 8, seed=1)


JITTER_CASES = list(ROUTER_FACTORIES)


@pytest.mark.parametrize("name", JITTER_CASES)
def test_jitter_changes_training_logits_only(name):
    router = ROUTER_FACTORIES[name](jitter_noise=0.5, seed=2)
    tokens = router_inputs(name)
    router(tokens)  # build
    clean = to_numpy(router.compute_logits(tokens, training=False))
    np.testing.assert_array_equal(clean, to_numpy(router.compute_logits(tokens, training=False)))
    jittered = to_numpy(router.compute_logits(tokens, training=True))
    assert jittered.shape == clean.shape
    assert not np.allclose(jittered, clean, atol=1e-4)


@pytest.mark.parametrize("name", list(ROUTER_FACTORIES))
def test_inference_is_deterministic_with_jitter(name):
    router = ROUTER_FACTORIES[name](jitter_noise=0.5, seed=2)
    tokens = router_inputs(name)
    first, second = router(tokens, training=False), router(tokens, training=False)
    np.testing.assert_array_equal(to_numpy(first.router_probs), to_numpy(second.router_probs))


def test_jitter_changes_routing_probabilities_in_training():
    router = TopKRouter(num_experts=4, top_k=2, jitter_noise=0.5, seed=2)
    tokens = router_inputs("top_k")
    clean = to_numpy(router(tokens, training=False).router_probs)
    noisy = to_numpy(router(tokens, training=True).router_probs)
    assert not np.allclose(clean, noisy, atol=1e-4)


@pytest.mark.parametrize("name", list(ROUTER_FACTORIES))
def test_router_math_is_float32_under_mixed_precision(name):
    keras.config.set_dtype_policy("mixed_bfloat16")
    router = ROUTER_FACTORIES[name]()
    tokens = keras.ops.cast(router_inputs(name), "bfloat16")
    result = router(tokens, training=True)
    assert keras.backend.standardize_dtype(result.router_probs.dtype) == "float32"
    assert keras.backend.standardize_dtype(router.kernel.dtype) == "float32"
    for field in ("expert_weight", "token_weight", "dispatch_weights", "combine_weights", "router_logits"):
        value = getattr(result, field, None)
        if value is not None:
            assert keras.backend.standardize_dtype(value.dtype) == "float32", field
