"""`dispatch="auto"`: the table of `keras_moe.dispatch.choose` and that the layer runs what it picks."""

import keras
import numpy as np
import pytest

import keras_moe
from keras_moe.dispatch import auto_mode, choose

SMALL, LARGE = 128 * 128, 512 * 1024


@pytest.mark.parametrize(
    "tokens, experts, size, expected",
    [
        (1, 8, SMALL, "all_experts"),  # decoding: every expert costs 8 rows, gathering 2 choices costs 10
        (64, 8, SMALL, "all_experts"),
        (256, 8, SMALL, "blocked"),  # training-sized batches
        (4096, 8, LARGE, "blocked"),
        (1, 64, SMALL, "gathered"),  # many experts: read the 2 chosen ones, not all 64
        (16, 64, SMALL, "gathered"),
        (64, 64, SMALL, "blocked"),
        (None, 8, SMALL, "dropless"),
    ],
)
def test_jax_and_xla_picks(tokens, experts, size, expected):
    assert auto_mode(tokens, 2, experts, size, backend="jax", platform="cpu") == expected
    assert auto_mode(tokens, 2, experts, size, backend="tensorflow", xla=True) == expected


@pytest.mark.parametrize(
    "tokens, experts, size, expected",
    [
        (1, 8, SMALL, "dropless"),  # one token's 2 groups split cheaper than 8 experts compute
        (8, 8, SMALL, "all_experts"),
        (64, 8, SMALL, "all_experts"),
        (8, 8, LARGE, "dropless"),  # experts out of cache: splitting wins
        (256, 8, SMALL, "dropless"),
        (4, 64, SMALL, "dropless"),
    ],
)
def test_tensorflow_picks(tokens, experts, size, expected):
    assert auto_mode(tokens, 2, experts, size, backend="tensorflow") == expected


def test_tpu_and_other_backends_use_grouped_matmul():
    assert auto_mode(4096, 2, 8, SMALL, backend="jax", platform="tpu") == "dropless"
    assert auto_mode(1, 2, 8, SMALL, backend="torch") == "dropless"


def test_layer_runs_the_mode_auto_picks(monkeypatch):
    """The auto layer's outputs come from the picked mode's function, for a decode-sized and a training-sized batch."""
    from keras_moe.routing import token_choice

    picked = []
    real = dict(token_choice.DISPATCH_MODES)
    for mode in ("dropless", "blocked", "gathered", "all_experts"):
        monkeypatch.setitem(token_choice.DISPATCH_MODES, mode, lambda *a, _m=mode, **k: picked.append(_m) or real[_m](*a, **k))
    layer = keras_moe.MoELayer(8, 16, router={"class_name": "top_k", "config": {"top_k": 2}}, dispatch="auto")
    for tokens in (1, 300):
        x = np.random.default_rng(tokens).standard_normal((1, tokens, 8)).astype("float32")
        layer(x)
        backend = keras.backend.backend()
        platform = "cpu" if backend == "jax" else None
        expected = auto_mode(tokens, 2, 8, 16 * 8, backend=backend, platform=platform)
        assert picked[-1] == expected, (tokens, picked)


def test_constants_are_the_documented_ones():
    """The docstring's table quotes these thresholds; a change must update both."""
    doc = choose.__doc__
    assert str(choose.FEW_ROWS) in doc and f"{choose.GATHER_COST} t k" in doc and "2^15" in doc
    assert choose.TF_ALL_EXPERTS_MAX_SIZE == 2**15
