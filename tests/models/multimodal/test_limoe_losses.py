"""LIMoE local/global entropy losses on hand-built router probabilities with known answers."""

import math

import keras
import numpy as np

from keras_moe.losses import limoe


def value(x):
    return float(keras.ops.convert_to_numpy(x))


def test_local_entropy_is_zero_for_one_hot_and_log_e_for_uniform():
    assert abs(value(limoe.local_entropy_loss(np.eye(4, dtype="float32")))) < 1e-6
    assert abs(value(limoe.local_entropy_loss(np.full((3, 4), 0.25, "float32"))) - math.log(4)) < 1e-6


def test_global_entropy_rewards_spreading_over_experts():
    spread = np.eye(4, dtype="float32")  # each token sure, tokens on different experts: marginal uniform
    collapsed = np.tile([[1.0, 0.0, 0.0, 0.0]], (4, 1)).astype("float32")
    assert abs(value(limoe.global_entropy_loss(spread)) + math.log(4)) < 1e-6
    assert abs(value(limoe.global_entropy_loss(collapsed))) < 1e-6
    assert abs(value(limoe.global_entropy_loss(spread, threshold=math.log(2)))) < 1e-6  # above tau: no push
    assert abs(value(limoe.global_entropy_loss(collapsed, threshold=math.log(2))) - math.log(2)) < 1e-6


def test_per_modality_losses_see_only_their_tokens_and_skip_padding():
    probs = np.array([[1, 0], [0, 1], [0.5, 0.5], [0.5, 0.5]], "float32")
    modality = np.array([0, 0, 1, 1])
    local, global_ = (keras.ops.convert_to_numpy(v) for v in limoe.modality_entropy_losses(probs, modality, 2))
    np.testing.assert_allclose(local, [0.0, math.log(2)], atol=1e-6)
    np.testing.assert_allclose(global_, [-math.log(2), -math.log(2)], atol=1e-6)
    mask = np.array([1, 0, 1, 1])  # text keeps only the token sure of expert 0: marginal one-hot
    _, global_ = (keras.ops.convert_to_numpy(v) for v in limoe.modality_entropy_losses(probs, modality, 2, mask=mask))
    np.testing.assert_allclose(global_, [0.0, -math.log(2)], atol=1e-6)
    local, global_ = (keras.ops.convert_to_numpy(v) for v in limoe.modality_entropy_losses(probs, np.zeros(4, "int32"), 2))
    assert local[1] == 0 and global_[1] == 0  # a modality without tokens contributes nothing
