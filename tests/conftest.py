"""Shared test set-up: quiet TensorFlow logs, fixed seeds, and helpers used across test files."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_keras_state():
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def backend():
    return keras.backend.backend()


def random_tokens(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")
