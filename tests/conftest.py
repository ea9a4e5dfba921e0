"""Shared test set-up: quiet TensorFlow logs, fixed seeds, and helpers used across test files."""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Eager JAX compiles each op on first use (about 75 ms each here, hundreds per tiny model): cache the
# programs on disk, so pytest-xdist workers and the `keras-moe` processes tests start reuse them
# (a recipe's one-step run on JAX: 81 s without, 43 s with a warm cache).
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "keras-moe-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _reset_keras_state():
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    yield
    keras.config.set_dtype_policy("float32")


def also_on_jax(values, on_jax, why):
    """`values` as pytest params, those outside `on_jax` skipped on the JAX pass (with `why`): for
    end-to-end runs whose JAX-specific paths the kept ones and the layer tests already cover."""
    skip = pytest.mark.skipif(keras.backend.backend() == "jax", reason=why)
    return [pytest.param(value, marks=() if value in on_jax else skip) for value in values]


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def backend():
    return keras.backend.backend()


def random_tokens(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")
